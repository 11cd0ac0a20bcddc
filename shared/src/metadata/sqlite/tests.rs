//! Tests of the SQLite adapter: the conformance suites, migrations, corrupt rows and query plans.

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
        scan_gate: None,
        signatures: None,
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
