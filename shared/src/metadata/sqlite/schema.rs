//! The schema: migrations, applied in order when a file is opened.

#[allow(unused_imports)]
use super::*;

/// Schema migrations; `PRAGMA user_version` records how many have been applied.
pub(super) const MIGRATIONS: &[&str] = &[
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
    // 6: the pull gate's view of each manifest's last succeeded scan (NULL: never scanned)
    "
    ALTER TABLE manifests ADD COLUMN scan_gate TEXT;
    ",
    // 7: the signatures each manifest has, and the keys they verify under (NULL: never looked)
    "
    ALTER TABLE manifests ADD COLUMN signatures TEXT;
    ",
];

/// Applies the migrations the file has not seen yet, in one transaction.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), MetadataError> {
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
