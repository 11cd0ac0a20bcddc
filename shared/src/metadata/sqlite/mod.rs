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
    Manifests, MetadataError, Page, Repositories, UnixTime, UploadSession, UploadSessions, GC_FENCE_SECS,
};
use crate::oci::{Digest, RepoName, Tag, UploadId};

/// How long a connection waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Prepared statements kept per connection (the store uses a few dozen distinct ones).
const STATEMENT_CACHE: usize = 64;

/// Schema migrations; `PRAGMA user_version` records how many have been applied.
const MIGRATIONS: &[&str] = &[
    // 1: the initial schema
    "
    CREATE TABLE repositories (
        name       TEXT PRIMARY KEY NOT NULL,
        created_at INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE blob_links (
        repo      TEXT NOT NULL REFERENCES repositories(name),
        digest    TEXT NOT NULL,
        size      INTEGER NOT NULL,
        linked_at INTEGER NOT NULL,
        PRIMARY KEY (repo, digest)
    ) WITHOUT ROWID;
    CREATE INDEX blob_links_by_digest ON blob_links(digest);

    -- blobs and children are kept twice: newline-joined in the row (so reading a manifest is
    -- one row) and as rows of manifest_blobs / manifest_children (so reverse lookups are indexed)
    CREATE TABLE manifests (
        repo          TEXT NOT NULL REFERENCES repositories(name),
        digest        TEXT NOT NULL,
        media_type    TEXT NOT NULL,
        size          INTEGER NOT NULL,
        artifact_type TEXT,
        subject       TEXT,
        annotations   TEXT,
        blobs         TEXT NOT NULL,
        children      TEXT NOT NULL,
        pushed_at     INTEGER NOT NULL,
        PRIMARY KEY (repo, digest)
    ) WITHOUT ROWID;
    CREATE INDEX manifests_by_digest ON manifests(digest);
    CREATE INDEX manifests_by_subject ON manifests(repo, subject, digest);

    CREATE TABLE manifest_blobs (
        repo     TEXT NOT NULL,
        manifest TEXT NOT NULL,
        blob     TEXT NOT NULL,
        PRIMARY KEY (repo, manifest, blob),
        FOREIGN KEY (repo, manifest) REFERENCES manifests(repo, digest) ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE INDEX manifest_blobs_by_blob ON manifest_blobs(blob);

    CREATE TABLE manifest_children (
        repo   TEXT NOT NULL,
        parent TEXT NOT NULL,
        child  TEXT NOT NULL,
        PRIMARY KEY (repo, parent, child),
        FOREIGN KEY (repo, parent) REFERENCES manifests(repo, digest) ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE INDEX manifest_children_by_child ON manifest_children(repo, child);

    CREATE TABLE tags (
        repo       TEXT NOT NULL,
        tag        TEXT NOT NULL,
        digest     TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (repo, tag),
        FOREIGN KEY (repo, digest) REFERENCES manifests(repo, digest) ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE INDEX tags_by_manifest ON tags(repo, digest);

    CREATE TABLE uploads (
        id          TEXT PRIMARY KEY NOT NULL,
        repo        TEXT NOT NULL,
        byte_offset INTEGER NOT NULL,
        hash_state  BLOB NOT NULL,
        staging     BLOB NOT NULL,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX uploads_by_updated ON uploads(updated_at);
    ",
    // 2: control-plane documents (registries, users, access keys, settings, audit entries)
    "
    CREATE TABLE documents (
        collection TEXT NOT NULL,
        id         TEXT NOT NULL,
        body       TEXT NOT NULL,
        version    INTEGER NOT NULL,
        PRIMARY KEY (collection, id)
    ) WITHOUT ROWID;
    ",
    // 3: when each manifest was last pulled (NULL: never)
    "
    ALTER TABLE manifests ADD COLUMN pulled_at INTEGER;
    ",
    // 4: garbage-collection fences (generation: fences ever taken; fenced_at: set while one holds)
    "
    CREATE TABLE blob_fences (
        digest     TEXT PRIMARY KEY NOT NULL,
        generation INTEGER NOT NULL,
        fenced_at  INTEGER
    ) WITHOUT ROWID;
    ",
    // 5: the principal that opened each upload session (NULL: opened before owners were kept)
    "
    ALTER TABLE uploads ADD COLUMN owner TEXT;
    ",
];

/// The manifest columns every manifest read selects, in the order [`decode_manifest`] reads.
macro_rules! manifest_columns {
    () => {
        "m.digest, m.media_type, m.size, m.artifact_type, m.subject, m.annotations, m.blobs, m.children, m.pushed_at, \
         m.pulled_at"
    };
}

/// The upload columns every session read selects, in the order [`decode_upload`] reads.
macro_rules! upload_columns {
    () => {
        "id, repo, byte_offset, hash_state, created_at, updated_at, staging, owner"
    };
}

const RESOLVE_TAG_SQL: &str = concat!(
    "SELECT ",
    manifest_columns!(),
    " FROM tags t JOIN manifests m ON m.repo = t.repo AND m.digest = t.digest WHERE t.repo = ?1 AND t.tag = ?2"
);
const MANIFEST_SQL: &str =
    concat!("SELECT ", manifest_columns!(), " FROM manifests m WHERE m.repo = ?1 AND m.digest = ?2");
const REFERRERS_SQL: &str = concat!(
    "SELECT ",
    manifest_columns!(),
    // without INDEXED BY the planner, guessing without statistics, walks the repository's
    // whole primary key instead
    " FROM manifests m INDEXED BY manifests_by_subject",
    " WHERE m.repo = ?1 AND m.subject = ?2 AND (?3 IS NULL OR m.artifact_type = ?3) ORDER BY m.digest"
);
const LIST_MANIFESTS_SQL: &str = concat!(
    "SELECT ",
    manifest_columns!(),
    " FROM manifests m WHERE m.repo = ?1 AND m.digest > ?2 ORDER BY m.digest LIMIT ?3"
);
const TAGS_OF_SQL: &str = "SELECT tag FROM tags WHERE repo = ?1 AND digest = ?2 ORDER BY tag";
const DOCUMENT_SQL: &str = "SELECT body, version FROM documents WHERE collection = ?1 AND id = ?2";
const DOCUMENT_VERSION_SQL: &str = "SELECT version FROM documents WHERE collection = ?1 AND id = ?2";
/// Documents from a lower bound that is itself included (the prefix).
const LIST_DOCUMENTS_FROM_SQL: &str =
    "SELECT id, body, version FROM documents WHERE collection = ?1 AND id >= ?2 ORDER BY id LIMIT ?3";
/// Documents after a lower bound that is excluded (the caller's `after`).
const LIST_DOCUMENTS_AFTER_SQL: &str =
    "SELECT id, body, version FROM documents WHERE collection = ?1 AND id > ?2 ORDER BY id LIMIT ?3";
const LINKED_BLOB_SQL: &str = "SELECT size FROM blob_links WHERE repo = ?1 AND digest = ?2";
const BLOB_REFERENCED_SQL: &str = "SELECT EXISTS (SELECT 1 FROM blob_links WHERE digest = ?1) \
     OR EXISTS (SELECT 1 FROM manifest_blobs WHERE blob = ?1) \
     OR EXISTS (SELECT 1 FROM manifests WHERE digest = ?1)";
const REPOSITORY_EXISTS_SQL: &str = "SELECT EXISTS (SELECT 1 FROM repositories WHERE name = ?1)";
/// Whether a repository still holds anything a deletion must not remove.
const REPOSITORY_IN_USE_SQL: &str =
    "SELECT EXISTS (SELECT 1 FROM manifests WHERE repo = ?1) OR EXISTS (SELECT 1 FROM tags WHERE repo = ?1)";
const LIST_TAGS_SQL: &str = "SELECT tag FROM tags WHERE repo = ?1 AND tag > ?2 ORDER BY tag LIMIT ?3";
const LIST_REPOSITORIES_SQL: &str = "SELECT name FROM repositories WHERE name > ?1 ORDER BY name LIMIT ?2";
const UPLOAD_SQL: &str = concat!("SELECT ", upload_columns!(), " FROM uploads WHERE id = ?1");
const STALE_UPLOADS_SQL: &str =
    concat!("SELECT ", upload_columns!(), " FROM uploads WHERE updated_at < ?1 ORDER BY updated_at, id");

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

/// Settings every connection needs (they are per connection, not stored in the file).
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

/// Applies the migrations the file has not seen yet, in one transaction.
fn migrate(conn: &mut Connection) -> Result<(), MetadataError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0)).map_err(backend)?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(MetadataError::Backend(format!(
            "database schema version {version} is newer than this Berth understands ({known})"
        )));
    }
    for sql in MIGRATIONS.iter().skip(usize::try_from(version).unwrap_or(0)) {
        tx.execute_batch(sql).map_err(backend)?;
    }
    if version != known {
        tx.pragma_update(None, "user_version", known).map_err(backend)?;
    }
    tx.commit().map_err(backend)
}

fn reader_pool_size() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get() * 2).clamp(2, 16)
}

/// Locks the writer, recovering from a panic in an earlier holder (whose transaction, if any,
/// is rolled back so the connection is clean).
fn lock_writer(writer: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    let conn = writer.lock().unwrap_or_else(PoisonError::into_inner);
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    conn
}

/// Up to `max` reading connections, opened on demand and reused.
struct ReaderPool {
    path: PathBuf,
    max: usize,
    state: Mutex<PoolState>,
    available: Condvar,
}

struct PoolState {
    idle: Vec<Connection>,
    open: usize,
}

/// A connection borrowed from the pool; returned on drop.
struct PooledReader<'a> {
    pool: &'a ReaderPool,
    conn: Option<Connection>,
}

impl ReaderPool {
    fn new(path: PathBuf, max: usize) -> Self {
        Self { path, max, state: Mutex::new(PoolState { idle: Vec::new(), open: 0 }), available: Condvar::new() }
    }

    fn get(&self) -> Result<PooledReader<'_>, MetadataError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(conn) = state.idle.pop() {
                return Ok(PooledReader { pool: self, conn: Some(conn) });
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match self.connect() {
                    Ok(conn) => Ok(PooledReader { pool: self, conn: Some(conn) }),
                    Err(e) => {
                        self.state.lock().unwrap_or_else(PoisonError::into_inner).open -= 1;
                        self.available.notify_one();
                        Err(backend(e))
                    }
                };
            }
            state = self.available.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn connect(&self) -> rusqlite::Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        configure(&conn)?;
        conn.pragma_update(None, "query_only", "ON")?;
        Ok(conn)
    }
}

impl PooledReader<'_> {
    fn connection(&self) -> &Connection {
        // always Some until drop
        match &self.conn {
            Some(conn) => conn,
            None => unreachable!("pooled connection used after release"),
        }
    }
}

impl Drop for PooledReader<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut state = self.pool.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.idle.push(conn);
            drop(state);
            self.pool.available.notify_one();
        }
    }
}

fn backend(e: rusqlite::Error) -> MetadataError {
    MetadataError::Backend(e.to_string())
}

fn corrupt(what: impl std::fmt::Display) -> MetadataError {
    MetadataError::Corrupt(what.to_string())
}

fn to_i64(value: u64, what: &str) -> Result<i64, MetadataError> {
    i64::try_from(value).map_err(|_| MetadataError::Backend(format!("{what} {value} is too large to store")))
}

/// A `LIMIT` that also fetches one row past the page, to learn whether more exist.
fn limit_plus_one(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1)
}

fn join_digests(digests: &[Digest]) -> String {
    let mut out = String::with_capacity(digests.len() * 72);
    for (i, d) in digests.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&d.to_string());
    }
    out
}

fn split_digests(text: &str) -> Result<Vec<Digest>, MetadataError> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split('\n').map(|s| s.parse().map_err(corrupt)).collect()
}

fn text<'r>(row: &'r Row<'_>, idx: usize) -> Result<&'r str, MetadataError> {
    row.get_ref(idx).map_err(backend)?.as_str().map_err(corrupt)
}

fn opt_text<'r>(row: &'r Row<'_>, idx: usize) -> Result<Option<&'r str>, MetadataError> {
    row.get_ref(idx).map_err(backend)?.as_str_or_null().map_err(corrupt)
}

fn unsigned(row: &Row<'_>, idx: usize) -> Result<u64, MetadataError> {
    let v: i64 = row.get(idx).map_err(backend)?;
    u64::try_from(v).map_err(|_| corrupt(format!("negative size or offset {v}")))
}

/// Builds a record from a row selected with `manifest_columns!()`.
fn decode_manifest(repo: &RepoName, row: &Row<'_>) -> Result<ManifestRecord, MetadataError> {
    let annotations = match opt_text(row, 5)? {
        None => None,
        Some(json) => Some(serde_json::from_str::<Map<String, Value>>(json).map_err(corrupt)?),
    };
    Ok(ManifestRecord {
        repo: repo.clone(),
        digest: text(row, 0)?.parse().map_err(corrupt)?,
        media_type: text(row, 1)?.to_string(),
        size: unsigned(row, 2)?,
        artifact_type: opt_text(row, 3)?.map(str::to_string),
        subject: opt_text(row, 4)?.map(|s| s.parse().map_err(corrupt)).transpose()?,
        annotations,
        blobs: split_digests(text(row, 6)?)?,
        children: split_digests(text(row, 7)?)?,
        pushed_at: row.get(8).map_err(backend)?,
        pulled_at: row.get(9).map_err(backend)?,
    })
}

/// Builds a session from a row selected with `upload_columns!()`.
fn decode_upload(row: &Row<'_>) -> Result<UploadSession, MetadataError> {
    Ok(UploadSession {
        id: UploadId::parse(text(row, 0)?).map_err(corrupt)?,
        repo: RepoName::parse(text(row, 1)?, None).map_err(corrupt)?,
        offset: unsigned(row, 2)?,
        hash_state: row.get(3).map_err(backend)?,
        created_at: row.get(4).map_err(backend)?,
        updated_at: row.get(5).map_err(backend)?,
        staging: row.get(6).map_err(backend)?,
        owner: opt_text(row, 7)?.map(str::to_string),
    })
}

/// A document's body as stored (JSON text).
fn encode_body(body: &Value) -> Result<String, MetadataError> {
    serde_json::to_string(body).map_err(|e| MetadataError::Backend(format!("document body could not be encoded: {e}")))
}

/// Builds a document from its id and a `body, version` pair of columns starting at `first`.
fn decode_document(id: String, row: &Row<'_>, first: usize) -> Result<Document, MetadataError> {
    let body = serde_json::from_str(text(row, first)?).map_err(corrupt)?;
    Ok(Document { id, body, version: unsigned(row, first + 1)? })
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

/// Runs a manifest query and decodes every row.
fn query_manifests(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    repo: &RepoName,
) -> Result<Vec<ManifestRecord>, MetadataError> {
    let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
    let mut rows = stmt.query(params).map_err(backend)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(backend)? {
        out.push(decode_manifest(repo, row)?);
    }
    Ok(out)
}

/// Runs a query for at most one manifest.
fn query_manifest(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    repo: &RepoName,
) -> Result<Option<ManifestRecord>, MetadataError> {
    let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
    let mut rows = stmt.query(params).map_err(backend)?;
    match rows.next().map_err(backend)? {
        Some(row) => decode_manifest(repo, row).map(Some),
        None => Ok(None),
    }
}

/// One page of a single-column name query run with `LIMIT limit + 1`.
fn query_page(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    limit: usize,
) -> Result<Page, MetadataError> {
    let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
    let mut rows = stmt.query(params).map_err(backend)?;
    let mut items = Vec::new();
    let mut more = false;
    while let Some(row) = rows.next().map_err(backend)? {
        if items.len() == limit {
            more = true;
            break;
        }
        items.push(text(row, 0)?.to_string());
    }
    Ok(Page { items, more })
}

fn ensure_repository(tx: &Connection, repo: &str, now: UnixTime) -> Result<(), MetadataError> {
    tx.prepare_cached("INSERT INTO repositories (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING")
        .map_err(backend)?
        .execute(params![repo, now])
        .map_err(backend)?;
    Ok(())
}

mod documents;
mod gc;
mod links;
mod manifests;
mod repositories;
mod uploads;

#[allow(unused_imports)]
use gc::*;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    crate::metadata_conformance!(async {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteMetadataStore::open(&dir.path().join("metadata.db")).unwrap();
        (store, dir)
    });

    mod in_memory {
        use super::SqliteMetadataStore;

        crate::metadata_conformance!(async { (SqliteMetadataStore::open_in_memory().unwrap(), ()) });
    }

    fn repo(name: &str) -> RepoName {
        RepoName::parse(name, None).unwrap()
    }

    fn record(repo: &RepoName, bytes: &[u8], blobs: Vec<Digest>, pushed_at: UnixTime) -> ManifestRecord {
        ManifestRecord {
            repo: repo.clone(),
            digest: Digest::sha256_of(bytes),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: bytes.len() as u64,
            artifact_type: None,
            subject: None,
            annotations: None,
            blobs,
            children: vec![],
            pushed_at,
            pulled_at: None,
        }
    }

    #[tokio::test]
    async fn reopening_keeps_data_and_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.db");
        let r = repo("keep/me");
        let layer = Digest::sha256_of(b"layer");
        let m = record(&r, b"manifest", vec![layer.clone()], 42);
        {
            let store = SqliteMetadataStore::open(&path).unwrap();
            store.link_blob(&r, &layer, 5, 1).await.unwrap();
            store.put_manifest(&m, &[Tag::parse("v1").unwrap()]).await.unwrap();
        }
        let store = SqliteMetadataStore::open(&path).unwrap();
        assert_eq!(store.resolve_tag(&r, &Tag::parse("v1").unwrap()).await.unwrap(), Some(m));
        assert_eq!(store.linked_blob(&r, &layer).await.unwrap(), Some(5));
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
    }

    /// A file written before the document table existed gains it on open and keeps its data.
    #[tokio::test]
    async fn migrates_a_first_version_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute("INSERT INTO repositories (name, created_at) VALUES ('old/repo', 1)", []).unwrap();
        }
        let store = SqliteMetadataStore::open(&path).unwrap();
        assert!(store.repository_exists(&repo("old/repo")).await.unwrap());
        assert_eq!(store.put_document("c", "id", &serde_json::json!({"a": 1}), Expect::Absent).await.unwrap(), 1);
        let version: i64 = Connection::open(&path).unwrap().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.db");
        drop(SqliteMetadataStore::open(&path).unwrap());
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(SqliteMetadataStore::open(&path), Err(MetadataError::Backend(_))));
    }

    #[tokio::test]
    async fn undecodable_rows_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.db");
        let store = SqliteMetadataStore::open(&path).unwrap();
        let r = repo("broken/repo");
        let m = record(&r, b"m", vec![], 1);
        store.put_manifest(&m, &[Tag::parse("t").unwrap()]).await.unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.execute("UPDATE manifests SET annotations = 'not json'", []).unwrap();
        assert!(matches!(store.manifest(&r, &m.digest).await, Err(MetadataError::Corrupt(_))));
        conn.execute("UPDATE manifests SET annotations = NULL, blobs = 'sha256:nope'", []).unwrap();
        assert!(matches!(store.resolve_tag(&r, &Tag::parse("t").unwrap()).await, Err(MetadataError::Corrupt(_))));

        store.put_document("c", "d", &serde_json::json!({}), Expect::Absent).await.unwrap();
        conn.execute("UPDATE documents SET body = '{not json'", []).unwrap();
        assert!(matches!(store.get_document("c", "d").await, Err(MetadataError::Corrupt(_))));
        assert!(matches!(store.list_documents("c", "", None, 10).await, Err(MetadataError::Corrupt(_))));
    }

    /// The hot queries must be index lookups, never table scans.
    #[test]
    fn hot_queries_use_indexes() {
        let store = SqliteMetadataStore::open_in_memory().unwrap();
        let conn = lock_writer(&store.inner.writer);
        for sql in [
            RESOLVE_TAG_SQL,
            MANIFEST_SQL,
            LINKED_BLOB_SQL,
            REFERRERS_SQL,
            BLOB_REFERENCED_SQL,
            REPOSITORY_EXISTS_SQL,
            REPOSITORY_IN_USE_SQL,
            "DELETE FROM blob_links WHERE repo = ?1",
            LIST_TAGS_SQL,
            LIST_MANIFESTS_SQL,
            TAGS_OF_SQL,
            DOCUMENT_SQL,
            LIST_DOCUMENTS_FROM_SQL,
            LIST_DOCUMENTS_AFTER_SQL,
            UPLOAD_SQL,
            STALE_UPLOADS_SQL,
            "SELECT parent FROM manifest_children WHERE repo = ?1 AND child = ?2 AND parent <> ?2 LIMIT 1",
            RECORD_PULL_SQL,
            PARENTS_SQL,
            REPOSITORY_USAGE_SQL,
            BLOB_LINKS_SQL,
            BLOB_USED_SQL,
            BLOB_USED_IN_SQL,
            FENCE_SQL,
        ] {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let nulls = vec!["x"; stmt.parameter_count()];
            let plan: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(nulls), |r| r.get::<_, String>(3))
                .unwrap()
                .map(|r| r.unwrap())
                .collect();
            let scans = |step: &String| step.starts_with("SCAN") && step != "SCAN CONSTANT ROW";
            assert!(!plan.iter().any(scans), "{sql}\n{plan:#?}");
            assert!(plan.iter().all(|step| !step.contains("TEMP B-TREE")), "{sql}\n{plan:#?}");
            if sql == REFERRERS_SQL {
                assert!(plan.iter().any(|step| step.contains("manifests_by_subject")), "{sql}\n{plan:#?}");
            }
        }
    }

    /// Not an assertion: prints the cost of the registry's hottest read. Run with
    /// `cargo test -p berth --release --lib resolve_tag_timing -- --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resolve_tag_timing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteMetadataStore::open(&dir.path().join("metadata.db")).unwrap();
        let r = repo("bench/app");
        let mut blobs = Vec::new();
        for i in 0..6u8 {
            let d = Digest::sha256_of(&[i]);
            store.link_blob(&r, &d, 1000, 1).await.unwrap();
            blobs.push(d);
        }
        let tag = Tag::parse("latest").unwrap();
        store.put_manifest(&record(&r, b"bench", blobs, 1), std::slice::from_ref(&tag)).await.unwrap();
        // fill the tables a little so lookups are not in a one-row table
        for i in 0..500u32 {
            let m = record(&r, format!("filler {i}").as_bytes(), vec![], 1);
            store.put_manifest(&m, &[Tag::parse(&format!("t{i}")).unwrap()]).await.unwrap();
        }
        let n = 20_000u32;
        let start = std::time::Instant::now();
        for _ in 0..n {
            assert!(store.resolve_tag(&r, &tag).await.unwrap().is_some());
        }
        let sequential = start.elapsed().as_nanos() / u128::from(n);

        let tasks = 32u32;
        let start = std::time::Instant::now();
        let cpu_start = process_cpu_ns();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..tasks {
            let (store, r, tag) = (store.clone(), r.clone(), tag.clone());
            set.spawn(async move {
                for _ in 0..n / tasks {
                    assert!(store.resolve_tag(&r, &tag).await.unwrap().is_some());
                }
            });
        }
        while let Some(res) = set.join_next().await {
            res.unwrap();
        }
        let concurrent = start.elapsed().as_nanos() / u128::from(n / tasks * tasks);
        let cpu = match (cpu_start, process_cpu_ns()) {
            (Some(a), Some(b)) => format!("{} ns", (b - a) / u128::from(n / tasks * tasks)),
            _ => "unknown".to_string(),
        };

        let conn = store.inner.readers.as_ref().unwrap().get().unwrap();
        let start = std::time::Instant::now();
        for _ in 0..n {
            query_manifest(conn.connection(), RESOLVE_TAG_SQL, params![r.as_str(), tag.as_str()], &r).unwrap().unwrap();
        }
        let bare = start.elapsed().as_nanos() / u128::from(n);
        println!(
            "resolve_tag: {sequential} ns/op sequential, {concurrent} ns/op with {tasks} concurrent tasks \
             (process CPU {cpu}/op), {bare} ns/op for the bare query without spawn_blocking"
        );
    }

    /// User plus system CPU time of this process, from `/proc` (Linux only).
    fn process_cpu_ns() -> Option<u128> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: u128 = fields.get(11)?.parse::<u128>().ok()? + fields.get(12)?.parse::<u128>().ok()?;
        Some(ticks * 10_000_000) // USER_HZ is 100 on Linux
    }
}
