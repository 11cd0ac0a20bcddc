//! Connections: the settings each needs, the writer's lock and the pool of readers.

#[allow(unused_imports)]
use super::*;

/// How long a connection waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Prepared statements kept per connection (the store uses a few dozen distinct ones).
const STATEMENT_CACHE: usize = 64;

/// Settings every connection needs (they are per connection, not stored in the file).
pub(super) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

/// How many reading connections the pool may open.
pub(super) fn reader_pool_size() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get() * 2).clamp(2, 16)
}

/// Locks the writer, recovering from a panic in an earlier holder (whose transaction, if any,
/// is rolled back so the connection is clean).
pub(super) fn lock_writer(writer: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    let conn = writer.lock().unwrap_or_else(PoisonError::into_inner);
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    conn
}

/// Up to `max` reading connections, opened on demand and reused.
pub(super) struct ReaderPool {
    pub(super) path: PathBuf,
    max: usize,
    state: Mutex<PoolState>,
    available: Condvar,
}

struct PoolState {
    idle: Vec<Connection>,
    open: usize,
}

/// A connection borrowed from the pool; returned on drop.
pub(super) struct PooledReader<'a> {
    pool: &'a ReaderPool,
    conn: Option<Connection>,
}

impl ReaderPool {
    pub(super) fn new(path: PathBuf, max: usize) -> Self {
        Self { path, max, state: Mutex::new(PoolState { idle: Vec::new(), open: 0 }), available: Condvar::new() }
    }

    pub(super) fn get(&self) -> Result<PooledReader<'_>, MetadataError> {
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
    pub(super) fn connection(&self) -> &Connection {
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
