//! Pull times and storage accounting, in process on the embedded backend: a manifest `GET`
//! (never a `HEAD`) records when it and the indexes listing it were pulled, and the usage
//! documents that the `refresh-usage` jobs keep give the exact bytes per image and per registry
//! that the management API shows.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use berth::metadata::UnixTime;
use berth::oci::Digest;
use common::registry::{TestRegistry, OCI_INDEX, OCI_MANIFEST};
use http::{Method, StatusCode};

const T0: UnixTime = 1_800_000_000;

/// A registry whose clock stands at [`T0`] (its usage refreshes are due at once, as in every
/// test registry).
fn registry() -> TestRegistry {
    TestRegistry::embedded().with_clock(T0)
}

/// Pushes `{}` as the config and `layers` as layers, tagged `tag`; the manifest and its digest.
async fn push_image(env: &TestRegistry, repo: &str, tag: &str, layers: &[&[u8]]) -> (Vec<u8>, Digest) {
    env.push_image_of(repo, Some(tag), b"{}", layers).await
}

/// The images listing of registry `team`, by image name: (storage_bytes, artifacts).
async fn images(env: &TestRegistry) -> Vec<(String, u64, u64)> {
    let listing = env.get_json("/api/v1/registries/team/images").await;
    listing["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let name = i["name"].as_str().unwrap().to_string();
            (name, i["storage_bytes"].as_u64().unwrap(), i["artifacts"].as_u64().unwrap())
        })
        .collect()
}

/// `storage_bytes` and `image_count` of registry `team`.
async fn registry_usage(env: &TestRegistry) -> (u64, u64) {
    let shown = env.get_json("/api/v1/registries/team").await;
    (shown["storage_bytes"].as_u64().unwrap(), shown["image_count"].as_u64().unwrap())
}

async fn pulled_at(env: &TestRegistry, repo: &str, digest: &Digest) -> Option<i64> {
    env.get_json(&format!("/api/v1/images/{repo}/artifacts/{digest}")).await["pulled_at"].as_i64()
}

/// Bytes of `n` distinct layers' content.
fn layer(label: &str, n: usize) -> Vec<u8> {
    let mut bytes = label.as_bytes().to_vec();
    bytes.resize(n, b'.');
    bytes
}

#[tokio::test]
async fn storage_is_counted_per_image_and_per_registry_and_follows_deletes() {
    let env = registry();
    let (web_layer, db_layer, shared) = (layer("web", 1000), layer("db", 300), layer("shared", 40));
    push_image(&env, "team/web", "v1", &[&web_layer, &shared]).await;
    push_image(&env, "team/db", "v1", &[&db_layer, &shared]).await;
    // without documents yet, the listing counts and writes them; the jobs agree
    assert_eq!(
        images(&env).await,
        vec![("team/db".to_string(), 2 + 300 + 40, 1), ("team/web".to_string(), 2 + 1000 + 40, 1)]
    );
    assert!(env.work().await >= 2, "each manifest push queued a refresh");
    assert_eq!(registry_usage(&env).await, (1042 + 342, 2), "a blob in two images counts in each");
    let doc = env.app.meta.get_document("usage", "team/web").await.unwrap().unwrap();
    assert_eq!(doc.body, serde_json::json!({"bytes": 1042, "blobs": 3, "artifacts": 1, "updated_at": T0}));

    // a second artifact: the documents lag until the queued refresh runs
    env.set_time(T0 + 10);
    let extra = layer("extra", 500);
    let (_, v2) = push_image(&env, "team/web", "v2", &[&extra]).await;
    assert_eq!(images(&env).await[1], ("team/web".to_string(), 1042, 1), "kept, not recounted per request");
    assert!(env.work().await >= 1);
    assert_eq!(images(&env).await[1], ("team/web".to_string(), 1542, 2));
    assert_eq!(registry_usage(&env).await, (1542 + 342, 2));
    let doc = env.app.meta.get_document("usage", "team/web").await.unwrap().unwrap();
    assert_eq!(doc.body["updated_at"], T0 + 10);

    // deleting the manifest leaves its blobs linked; deleting the blob frees its bytes
    let a = env.call(Method::DELETE, &format!("/v2/team/web/manifests/{v2}"), &[], vec![]).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert!(env.work().await >= 1);
    assert_eq!(images(&env).await[1], ("team/web".to_string(), 1542, 1));
    let a = env.call(Method::DELETE, &format!("/v2/team/web/blobs/{}", Digest::sha256_of(&extra)), &[], vec![]).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert!(env.work().await >= 1);
    assert_eq!(images(&env).await[1], ("team/web".to_string(), 1042, 1));
    assert_eq!(registry_usage(&env).await, (1042 + 342, 2));

    // a whole image deleted: its document goes, the registry counts only what remains
    let a = env.call(Method::DELETE, "/api/v1/images/team/db", &[], vec![]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert!(env.work().await >= 1);
    assert_eq!(images(&env).await, vec![("team/web".to_string(), 1042, 1)]);
    assert_eq!(registry_usage(&env).await, (1042, 1));
    assert_eq!(env.app.meta.get_document("usage", "team/db").await.unwrap(), None);

    // the registry answers of create and change carry the same figures
    let a = env.call_json(Method::PATCH, "/api/v1/registries/team", r#"{"public_access":true}"#).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!((a.json()["storage_bytes"].as_u64(), a.json()["image_count"].as_u64()), (Some(1042), Some(1)));
    let a = env.call_json(Method::POST, "/api/v1/registries", r#"{"name":"fresh"}"#).await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!((a.json()["storage_bytes"].as_u64(), a.json()["image_count"].as_u64()), (Some(0), Some(0)));
}

/// An image pushed before accounting existed (no document, no queued job) is counted when the
/// registry is shown, and its document written.
#[tokio::test]
async fn a_missing_document_is_counted_on_demand() {
    let env = registry();
    push_image(&env, "team/old", "v1", &[&layer("old", 700)]).await;
    // as if the push had happened before: no job, no document
    let old = berth::oci::RepoName::parse("team/old", None).unwrap();
    // (the push's event is queued too; it is not this test's business)
    let pending = env.discard_pending_jobs().await;
    assert!(pending.contains(&berth::usage::refresh_job(&old)), "{pending:?}");
    assert!(pending.iter().all(|j| j == &berth::usage::refresh_job(&old) || j.kind == "publish-event"), "{pending:?}");
    assert_eq!(env.app.meta.get_document("usage", "team/old").await.unwrap(), None);
    assert_eq!(registry_usage(&env).await, (702, 1));
    let doc = env.app.meta.get_document("usage", "team/old").await.unwrap().unwrap();
    assert_eq!(doc.body["bytes"], 702);
    assert_eq!(doc.body["artifacts"], 1);
}

#[tokio::test]
async fn get_records_pull_times_head_does_not_and_a_child_pull_counts_for_its_index() {
    let env = registry();
    let (child_bytes, child) = push_image(&env, "team/multi", "amd64", &[&layer("amd64", 64)]).await;
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{child}","size":{},"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
        child_bytes.len()
    );
    let a = env.push_manifest("team/multi", "latest", OCI_INDEX, index.as_bytes()).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let idx = Digest::sha256_of(index.as_bytes());
    let e = &env;
    let head = |reference: String| async move {
        let a = e.call(Method::HEAD, &format!("/v2/team/multi/manifests/{reference}"), &[], vec![]).await;
        assert_eq!(a.status, StatusCode::OK);
    };
    let get = |reference: String| async move {
        let a = e.call(Method::GET, &format!("/v2/team/multi/manifests/{reference}"), &[], vec![]).await;
        assert_eq!(a.status, StatusCode::OK);
    };

    head("latest".into()).await;
    head(child.to_string()).await;
    assert_eq!(pulled_at(&env, "team/multi", &idx).await, None, "a HEAD is no pull");
    assert_eq!(pulled_at(&env, "team/multi", &child).await, None);

    // pulling the index does not count for its children
    get("latest".into()).await;
    assert_eq!(pulled_at(&env, "team/multi", &idx).await, Some(T0));
    assert_eq!(pulled_at(&env, "team/multi", &child).await, None);

    // pulling the child by digest counts for it, and for its index once the minute is over
    env.set_time(T0 + 5);
    get(child.to_string()).await;
    assert_eq!(pulled_at(&env, "team/multi", &child).await, Some(T0 + 5));
    assert_eq!(pulled_at(&env, "team/multi", &idx).await, Some(T0), "the index was written less than a minute ago");
    env.set_time(T0 + 30);
    get(child.to_string()).await;
    assert_eq!(pulled_at(&env, "team/multi", &child).await, Some(T0 + 5), "at most one write a minute");
    env.set_time(T0 + 70);
    get(child.to_string()).await;
    assert_eq!(pulled_at(&env, "team/multi", &child).await, Some(T0 + 70));
    assert_eq!(pulled_at(&env, "team/multi", &idx).await, Some(T0 + 70));

    // a HEAD much later changes nothing
    env.set_time(T0 + 1000);
    head("latest".into()).await;
    head(child.to_string()).await;
    assert_eq!(pulled_at(&env, "team/multi", &idx).await, Some(T0 + 70));
    assert_eq!(pulled_at(&env, "team/multi", &child).await, Some(T0 + 70));
    let listed = env.get_json("/api/v1/images/team/multi/artifacts").await;
    assert!(listed["items"].as_array().unwrap().iter().all(|a| a["pulled_at"] == T0 + 70));
    env.work().await; // the usage refreshes its pushes queued
}
