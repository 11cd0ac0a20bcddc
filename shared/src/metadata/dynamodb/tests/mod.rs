//! Tests of the DynamoDB adapter against moto: the conformance suites and shared helpers.

use super::*;
use crate::testing;

mod deletes;
mod puts;
mod table;

/// A store over a table of its own (moto copies a whole table per transaction, so small
/// private tables keep the tests fast and independent).
async fn fresh_store() -> DynamoMetadataStore {
    let client = Client::new(&testing::aws_config().await);
    let table = testing::unique_name("berth-meta");
    DynamoMetadataStore::create_table(&client, &table).await.unwrap();
    DynamoMetadataStore::new(client, table)
}

crate::metadata_conformance!(async { (fresh_store().await, ()) });

/// The same suite with every put staged and tiny transactions, through the split paths.
mod staged {
    crate::metadata_conformance!(async {
        (super::fresh_store().await.staging_always().with_max_transaction_items(24), ())
    });
}

fn repo(name: &str) -> RepoName {
    RepoName::parse(&format!("{name}-{}", uuid::Uuid::new_v4().simple()), None).unwrap()
}

fn image(repo: &RepoName, label: &str, blobs: Vec<Digest>, children: Vec<Digest>) -> ManifestRecord {
    ManifestRecord {
        repo: repo.clone(),
        digest: Digest::sha256_of(format!("{label} {}", uuid::Uuid::new_v4()).as_bytes()),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size: 1000,
        artifact_type: None,
        subject: None,
        annotations: None,
        blobs,
        children,
        pushed_at: 1_700_000_000,
        pulled_at: None,
        scan_gate: None,
        signatures: None,
    }
}

fn tag(name: &str) -> Tag {
    Tag::parse(name).unwrap()
}

async fn link_many(store: &DynamoMetadataStore, repo: &RepoName, count: usize) -> Vec<Digest> {
    let digests: Vec<Digest> =
        (0..count).map(|i| Digest::sha256_of(format!("layer {i} {}", uuid::Uuid::new_v4()).as_bytes())).collect();
    for chunk in digests.chunks(16) {
        for r in join_all(chunk.iter().map(|d| store.link_blob(repo, d, 10, 1_000))).await {
            r.unwrap();
        }
    }
    digests
}

/// Every item of the table, as (PK, SK), sorted.
async fn scan(store: &DynamoMetadataStore) -> Vec<Key> {
    let mut keys = Vec::new();
    let mut start = None;
    loop {
        let out = store.client.scan().table_name(store.table()).set_exclusive_start_key(start).send().await.unwrap();
        keys.extend(out.items.unwrap_or_default().iter().map(|i| item_key(i).unwrap()));
        match out.last_evaluated_key.filter(|k| !k.is_empty()) {
            Some(k) => start = Some(k),
            None => break,
        }
    }
    keys.sort();
    keys
}
