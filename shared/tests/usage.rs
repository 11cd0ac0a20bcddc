//! Pull times and storage accounting, in process on the embedded backend: a manifest `GET`
//! (never a `HEAD`) records when it and the indexes listing it were pulled, and the usage
//! documents that the `refresh-usage` jobs keep give the exact bytes per image and per registry
//! that the management API shows.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use berth::api;
use berth::app::{App, Settings};
use berth::body::{empty_stream, once_stream};
use berth::metadata::UnixTime;
use berth::oci::Digest;
use common::{admin_basic, prepare, TestClock};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const T0: UnixTime = 1_800_000_000;

struct Env {
    app: App,
    clock: Arc<TestClock>,
    prepared: tokio::sync::OnceCell<()>,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

impl Env {
    /// A fresh embedded store whose usage refreshes are due at once, on a test clock.
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings { usage_refresh_delay: std::time::Duration::ZERO, ..Settings::default() };
        let mut app = App::embedded(dir.path(), settings).unwrap();
        let clock = Arc::new(TestClock(AtomicI64::new(T0)));
        app.clock = clock.clone();
        Env { app, clock, prepared: tokio::sync::OnceCell::new(), _dir: dir }
    }

    async fn call(&self, method: Method, uri: &str, content_type: Option<&str>, body: Vec<u8>) -> Answer {
        prepare(&self.app, &self.prepared).await;
        let mut b = http::Request::builder().method(method).uri(uri).header("host", "127.0.0.1:5000");
        b = b.header("authorization", admin_basic());
        if let Some(t) = content_type {
            b = b.header("content-type", t);
        }
        let stream = if body.is_empty() { empty_stream() } else { once_stream(body) };
        let response = api::handle(&self.app, api::AllRoutes, b.body(stream).unwrap()).await;
        let (parts, body) = response.into_parts();
        Answer { status: parts.status, body: body.collect().await.unwrap().to_bytes().to_vec() }
    }

    async fn get_json(&self, uri: &str) -> Value {
        let a = self.call(Method::GET, uri, None, vec![]).await;
        assert_eq!(a.status, StatusCode::OK, "GET {uri}: {}", String::from_utf8_lossy(&a.body));
        a.json()
    }

    async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let digest = Digest::sha256_of(data);
        let uri = format!("/v2/{repo}/blobs/uploads/?digest={digest}");
        let a = self.call(Method::POST, &uri, None, data.to_vec()).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&a.body));
        digest
    }

    async fn push_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> Digest {
        let uri = format!("/v2/{repo}/manifests/{reference}");
        let a = self.call(Method::PUT, &uri, Some(media_type), body.to_vec()).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&a.body));
        Digest::sha256_of(body)
    }

    /// Pushes `{}` as the config and `layers` as layers, tagged `tag`; the manifest and its digest.
    async fn push_image(&self, repo: &str, tag: &str, layers: &[&[u8]]) -> (Vec<u8>, Digest) {
        let config = self.push_blob(repo, b"{}").await;
        let mut entries = Vec::new();
        for layer in layers {
            let d = self.push_blob(repo, layer).await;
            entries.push(format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":{}}}"#,
                layer.len()
            ));
        }
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},
            "layers":[{}]}}"#,
            entries.join(",")
        )
        .into_bytes();
        let digest = self.push_manifest(repo, tag, OCI_MANIFEST, &manifest).await;
        (manifest, digest)
    }

    /// Runs queued jobs until none is due; how many ran.
    async fn run_jobs(&self) -> usize {
        let mut ran = 0;
        loop {
            match berth::jobs::work_once(&self.app, 10).await.unwrap() {
                0 => return ran,
                n => ran += n,
            }
        }
    }

    /// The images listing of registry `team`, by image name: (storage_bytes, artifacts).
    async fn images(&self) -> Vec<(String, u64, u64)> {
        let listing = self.get_json("/api/v1/registries/team/images").await;
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
    async fn registry(&self) -> (u64, u64) {
        let shown = self.get_json("/api/v1/registries/team").await;
        (shown["storage_bytes"].as_u64().unwrap(), shown["image_count"].as_u64().unwrap())
    }

    async fn pulled_at(&self, repo: &str, digest: &Digest) -> Option<i64> {
        self.get_json(&format!("/api/v1/images/{repo}/artifacts/{digest}")).await["pulled_at"].as_i64()
    }

    fn set_time(&self, t: UnixTime) {
        self.clock.0.store(t, Ordering::SeqCst);
    }
}

/// Bytes of `n` distinct layers' content.
fn layer(label: &str, n: usize) -> Vec<u8> {
    let mut bytes = label.as_bytes().to_vec();
    bytes.resize(n, b'.');
    bytes
}

#[tokio::test]
async fn storage_is_counted_per_image_and_per_registry_and_follows_deletes() {
    let env = Env::new();
    let (web_layer, db_layer, shared) = (layer("web", 1000), layer("db", 300), layer("shared", 40));
    env.push_image("team/web", "v1", &[&web_layer, &shared]).await;
    env.push_image("team/db", "v1", &[&db_layer, &shared]).await;
    // without documents yet, the listing counts and writes them; the jobs agree
    assert_eq!(
        env.images().await,
        vec![("team/db".to_string(), 2 + 300 + 40, 1), ("team/web".to_string(), 2 + 1000 + 40, 1)]
    );
    assert!(env.run_jobs().await >= 2, "each manifest push queued a refresh");
    assert_eq!(env.registry().await, (1042 + 342, 2), "a blob in two images counts in each");
    let doc = env.app.meta.get_document("usage", "team/web").await.unwrap().unwrap();
    assert_eq!(doc.body, serde_json::json!({"bytes": 1042, "blobs": 3, "artifacts": 1, "updated_at": T0}));

    // a second artifact: the documents lag until the queued refresh runs
    env.set_time(T0 + 10);
    let extra = layer("extra", 500);
    let (_, v2) = env.push_image("team/web", "v2", &[&extra]).await;
    assert_eq!(env.images().await[1], ("team/web".to_string(), 1042, 1), "kept, not recounted per request");
    assert!(env.run_jobs().await >= 1);
    assert_eq!(env.images().await[1], ("team/web".to_string(), 1542, 2));
    assert_eq!(env.registry().await, (1542 + 342, 2));
    let doc = env.app.meta.get_document("usage", "team/web").await.unwrap().unwrap();
    assert_eq!(doc.body["updated_at"], T0 + 10);

    // deleting the manifest leaves its blobs linked; deleting the blob frees its bytes
    let a = env.call(Method::DELETE, &format!("/v2/team/web/manifests/{v2}"), None, vec![]).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert!(env.run_jobs().await >= 1);
    assert_eq!(env.images().await[1], ("team/web".to_string(), 1542, 1));
    let a = env.call(Method::DELETE, &format!("/v2/team/web/blobs/{}", Digest::sha256_of(&extra)), None, vec![]).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert!(env.run_jobs().await >= 1);
    assert_eq!(env.images().await[1], ("team/web".to_string(), 1042, 1));
    assert_eq!(env.registry().await, (1042 + 342, 2));

    // a whole image deleted: its document goes, the registry counts only what remains
    let a = env.call(Method::DELETE, "/api/v1/images/team/db", None, vec![]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", String::from_utf8_lossy(&a.body));
    assert!(env.run_jobs().await >= 1);
    assert_eq!(env.images().await, vec![("team/web".to_string(), 1042, 1)]);
    assert_eq!(env.registry().await, (1042, 1));
    assert_eq!(env.app.meta.get_document("usage", "team/db").await.unwrap(), None);

    // the registry answers of create and change carry the same figures
    let a = env
        .call(Method::PATCH, "/api/v1/registries/team", Some("application/json"), br#"{"public_access":true}"#.to_vec())
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!((a.json()["storage_bytes"].as_u64(), a.json()["image_count"].as_u64()), (Some(1042), Some(1)));
    let a =
        env.call(Method::POST, "/api/v1/registries", Some("application/json"), br#"{"name":"fresh"}"#.to_vec()).await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!((a.json()["storage_bytes"].as_u64(), a.json()["image_count"].as_u64()), (Some(0), Some(0)));
}

/// An image pushed before accounting existed (no document, no queued job) is counted when the
/// registry is shown, and its document written.
#[tokio::test]
async fn a_missing_document_is_counted_on_demand() {
    let env = Env::new();
    env.push_image("team/old", "v1", &[&layer("old", 700)]).await;
    // as if the push had happened before: no job, no document
    while let Some(d) = env.app.queue.receive(10, std::time::Duration::from_secs(600)).await.unwrap().pop() {
        env.app.queue.ack(&d).await.unwrap();
    }
    assert_eq!(env.app.meta.get_document("usage", "team/old").await.unwrap(), None);
    assert_eq!(env.registry().await, (702, 1));
    let doc = env.app.meta.get_document("usage", "team/old").await.unwrap().unwrap();
    assert_eq!(doc.body["bytes"], 702);
    assert_eq!(doc.body["artifacts"], 1);
}

#[tokio::test]
async fn get_records_pull_times_head_does_not_and_a_child_pull_counts_for_its_index() {
    let env = Env::new();
    let (child_bytes, child) = env.push_image("team/multi", "amd64", &[&layer("amd64", 64)]).await;
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{child}","size":{},"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
        child_bytes.len()
    );
    let idx = env.push_manifest("team/multi", "latest", OCI_INDEX, index.as_bytes()).await;
    let e = &env;
    let head = |reference: String| async move {
        let a = e.call(Method::HEAD, &format!("/v2/team/multi/manifests/{reference}"), None, vec![]).await;
        assert_eq!(a.status, StatusCode::OK);
    };
    let get = |reference: String| async move {
        let a = e.call(Method::GET, &format!("/v2/team/multi/manifests/{reference}"), None, vec![]).await;
        assert_eq!(a.status, StatusCode::OK);
    };

    head("latest".into()).await;
    head(child.to_string()).await;
    assert_eq!(env.pulled_at("team/multi", &idx).await, None, "a HEAD is no pull");
    assert_eq!(env.pulled_at("team/multi", &child).await, None);

    // pulling the index does not count for its children
    get("latest".into()).await;
    assert_eq!(env.pulled_at("team/multi", &idx).await, Some(T0));
    assert_eq!(env.pulled_at("team/multi", &child).await, None);

    // pulling the child by digest counts for it, and for its index once the minute is over
    env.set_time(T0 + 5);
    get(child.to_string()).await;
    assert_eq!(env.pulled_at("team/multi", &child).await, Some(T0 + 5));
    assert_eq!(env.pulled_at("team/multi", &idx).await, Some(T0), "the index was written less than a minute ago");
    env.set_time(T0 + 30);
    get(child.to_string()).await;
    assert_eq!(env.pulled_at("team/multi", &child).await, Some(T0 + 5), "at most one write a minute");
    env.set_time(T0 + 70);
    get(child.to_string()).await;
    assert_eq!(env.pulled_at("team/multi", &child).await, Some(T0 + 70));
    assert_eq!(env.pulled_at("team/multi", &idx).await, Some(T0 + 70));

    // a HEAD much later changes nothing
    env.set_time(T0 + 1000);
    head("latest".into()).await;
    head(child.to_string()).await;
    assert_eq!(env.pulled_at("team/multi", &idx).await, Some(T0 + 70));
    assert_eq!(env.pulled_at("team/multi", &child).await, Some(T0 + 70));
    let listed = env.get_json("/api/v1/images/team/multi/artifacts").await;
    assert!(listed["items"].as_array().unwrap().iter().all(|a| a["pulled_at"] == T0 + 70));
}
