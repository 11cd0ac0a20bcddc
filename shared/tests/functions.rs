//! Lambda function tests: every sample event in `events/` goes through the code path its
//! function's `main` runs (`berth::lambda::serve_lambda_request`, `process_job_batch`,
//! `schedule_housekeeping`) on a fresh embedded store, prepared so that the event makes sense, and
//! the OCI answer's status, headers and bytes are checked. Plus a coverage check that every route
//! has a function crate and an event.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use common::registry::{basic, Answer, TestRegistry, OCI_INDEX, OCI_MANIFEST};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use berth::api::{self, Endpoint, Port, ENDPOINTS, ROUTE_NAMES};
use berth::lambda::{process_job_batch, schedule_housekeeping, serve_lambda_request, ExactBody};
use berth::metadata::prelude::*;
use berth::metadata::{ManifestRecord, UnixTime, UploadSession};
use berth::oci::{Algorithm, Digest, Hasher, RepoName, UploadId};
use berth::port_limit::blob_calls;
use http::{Method, StatusCode};
use lambda_http::{Body, IntoResponse, RequestExt};
use serde_json::{json, Value};

const REPO: &str = "team/app";
/// The image config and layer the manifest in `manifest-put.json` refers to.
const CONFIG: &[u8] =
    br#"{"architecture":"arm64","os":"linux","config":{"Entrypoint":["/berth"]},"rootfs":{"type":"layers","diff_ids":[]}}"#;
const LAYER: &[u8] = b"berth layer bytes: this stands in for a gzipped tar\n";
/// The body of `upload-put.json` (not UTF-8, so only a correct base64 decode gets its digest right).
const WHOLE: &[u8] = b"\x00\x01berth monolithic upload\xff\xfe\x80";
/// The upload session each upload event names.
const PATCH_ID: &str = "0d6f3c52-8a41-4b8e-9f0e-5b1c2d3e4f50";
const PUT_ID: &str = "1e7a4d63-9b52-4c9f-a01f-6c2d3e4f5061";
const STATUS_ID: &str = "2f8b5e74-ac63-4da0-b120-7d3e4f506172";
const CANCEL_ID: &str = "3a9c6f85-bd74-4eb1-8231-8e4f50617283";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn event_text(name: &str) -> String {
    let path = repo_root().join("events/apigw-v2").join(format!("{name}.json"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn event_json(name: &str) -> Value {
    serde_json::from_str(&event_text(name)).unwrap()
}

/// An event as the function receives it (what `lambda_http::run` hands the service).
fn event(name: &str) -> lambda_http::Request {
    lambda_http::request::from_str(&event_text(name)).unwrap()
}

/// The endpoint of route `name`.
fn endpoint(name: &str) -> &'static Endpoint {
    ENDPOINTS.iter().copied().find(|e| e.name == name).unwrap_or_else(|| panic!("no route {name}"))
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

fn request_of(json: &Value) -> lambda_http::Request {
    lambda_http::request::from_str(&json.to_string()).unwrap()
}

/// The manifest `manifest-put.json` carries (base64), which the other manifest events name.
fn manifest() -> Vec<u8> {
    use base64::Engine;
    let body = event_json("manifest-put")["body"].as_str().unwrap().to_string();
    base64::engine::general_purpose::STANDARD.decode(body).unwrap()
}

/// A test registry as a Lambda function sees it: no manifest bytes cached in the process (as in
/// a cold instance, so every read reaches the blob store and the port check sees it), and the
/// ports its handlers use recorded.
struct Functions {
    registry: TestRegistry,
    /// the ports handlers used since the last [`PortUse::take`]
    ports: Arc<PortUse>,
    /// the ports the last `invoke` used
    last_ports: Mutex<std::collections::BTreeSet<String>>,
}

impl std::ops::Deref for Functions {
    type Target = TestRegistry;
    fn deref(&self) -> &TestRegistry {
        &self.registry
    }
}

impl Functions {
    fn new() -> Functions {
        let mut registry = TestRegistry::embedded();
        let app = &mut registry.app;
        app.manifest_cache = Arc::new(berth::state::content_cache::ContentCache::new(0));
        let ports = Arc::new(PortUse::default());
        app.blobs = Arc::new(PortBlobs { inner: app.blobs.clone(), use_: ports.clone() });
        app.meta = Arc::new(PortMeta { inner: app.meta.clone(), use_: ports.clone() });
        Functions { registry, ports, last_ports: Mutex::default() }
    }

    /// What API Gateway gets back from function `function` for `req`: the same two steps
    /// `berth::lambda::run_route` takes.
    async fn invoke(&self, function: &'static str, mut req: lambda_http::Request) -> Answer {
        self.ready().await;
        if !req.headers().contains_key("authorization") {
            req.headers_mut().insert("authorization", basic(&self.admin()).parse().unwrap());
        }
        let sent_before = self.sent_jobs().len();
        let endpoint = endpoint(function);
        self.ports.take();
        let response = ExactBody(serve_lambda_request(&self.app, endpoint, req).await).into_response().await;
        // the function's IAM grants are derived from its declared ports: it must use no other
        let used = self.ports.take();
        let declared: std::collections::BTreeSet<String> =
            endpoint.ports.iter().map(|p| serde_json::to_value(p).unwrap().as_str().unwrap().to_string()).collect();
        assert!(used.is_subset(&declared), "{function} used ports {used:?} but declares {declared:?}");
        *self.last_ports.lock().unwrap() = used;
        // a function that enqueues needs sqs:SendMessage, which Terraform grants by the route table
        let sent = self.sent_jobs().len() - sent_before;
        assert!(
            sent == 0 || endpoint.uses(Port::JobsSend),
            "{function} enqueued {sent} job(s) but its endpoint does not declare Port::JobsSend"
        );
        let (parts, body) = response.into_parts();
        let body = match body {
            Body::Empty => vec![],
            Body::Binary(bytes) => {
                assert!(!bytes.is_empty(), "an empty body travels as Body::Empty");
                bytes
            }
            other => panic!("registry bodies must travel as binary, got {other:?}"),
        };
        assert_eq!(parts.headers["docker-distribution-api-version"], "registry/2.0");
        Answer { status: parts.status, headers: parts.headers, body }
    }

    /// Pushes the sample image (config, layer, manifest) and tags the manifest with each of `tags`.
    async fn push_sample_image(&self, tags: &[&str]) -> Digest {
        self.push_blob(REPO, CONFIG).await;
        self.push_blob(REPO, LAYER).await;
        let m = manifest();
        let digest = Digest::sha256_of(&m);
        let query: Vec<String> = tags.iter().map(|t| format!("tag={t}")).collect();
        let a = self.push_manifest(REPO, &format!("{digest}?{}", query.join("&")), OCI_MANIFEST, &m).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
        digest
    }

    /// Opens an upload session with the fixed id an event names (the API hands out random ids).
    async fn open_session(&self, id: &str) {
        let now = self.now();
        let session = UploadSession {
            id: UploadId::parse(id).unwrap(),
            repo: RepoName::parse(REPO, None).unwrap(),
            owner: Some("admin".to_string()),
            offset: 0,
            hash_state: Hasher::new(Algorithm::Sha256).save(),
            staging: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        self.app.meta.create_upload(&session).await.unwrap();
    }
}

#[tokio::test]
async fn base_event_answers_the_version_check() {
    let r = Functions::new();
    let a = r.invoke("base", event("base")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("content-type"), "application/json");
    assert_eq!(a.json(), json!({}));
}

#[tokio::test]
async fn catalog_event_pages_after_last() {
    let r = Functions::new();
    for repo in ["team/zeta", "team/app", "team/alpha", "team/beta"] {
        r.push_blob(repo, b"x").await;
    }
    let a = r.invoke("catalog", event("catalog")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json(), json!({ "repositories": ["team/app", "team/beta"] }));
    assert_eq!(a.header("link"), r#"</v2/_catalog?n=2&last=team/beta>; rel="next""#);
}

#[tokio::test]
async fn tags_list_event_behind_a_named_stage_pages_tags() {
    let r = Functions::new();
    r.push_sample_image(&["v1", "v2", "v3"]).await;
    let req = event("tags-list");
    assert_eq!(req.raw_http_path(), "/prod/v2/team/app/tags/list");
    let a = r.invoke("tags-list", req).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json(), json!({ "name": REPO, "tags": ["v1", "v2"] }));
    // the next page is reached through the same stage
    assert_eq!(a.header("link"), r#"</prod/v2/team/app/tags/list?n=2&last=v2>; rel="next""#);
    r.work().await; // the usage refreshes its changes queued
}

#[tokio::test]
async fn a_stage_missing_from_the_path_is_not_required() {
    // behind a custom domain the client's path has no stage, though the event still names one
    let r = Functions::new();
    r.push_sample_image(&["v1", "v2", "v3"]).await;
    let mut json = event_json("tags-list");
    json["rawPath"] = "/v2/team/app/tags/list".into();
    json["requestContext"]["http"]["path"] = "/v2/team/app/tags/list".into();
    let a = r.invoke("tags-list", request_of(&json)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["tags"], json!(["v1", "v2"]));
    assert_eq!(a.header("link"), r#"</v2/team/app/tags/list?n=2&last=v2>; rel="next""#);
    r.work().await; // the usage refreshes its changes queued
}

#[tokio::test]
async fn manifest_get_event_serves_the_exact_manifest() {
    let r = Functions::new();
    let digest = r.push_sample_image(&["v1"]).await;
    let a = r.invoke("manifest-get", event("manifest-get")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, manifest());
    assert_eq!(a.header("docker-content-digest"), digest.to_string());
    assert_eq!(a.header("content-type"), OCI_MANIFEST);
    assert_eq!(a.header("content-length"), manifest().len().to_string());
    r.work().await; // the usage refreshes its changes queued
}

#[tokio::test]
async fn manifest_put_event_stores_the_decoded_manifest_under_repeated_tags() {
    let r = Functions::new();
    assert_eq!(Digest::sha256_of(CONFIG).to_string(), json_of(&manifest())["config"]["digest"]);
    assert_eq!(Digest::sha256_of(LAYER).to_string(), json_of(&manifest())["layers"][0]["digest"]);
    r.push_blob(REPO, CONFIG).await;
    r.push_blob(REPO, LAYER).await;
    let digest = Digest::sha256_of(&manifest());
    let req = event("manifest-put");
    assert_eq!(req.uri().query(), Some("tag=v1&tag=latest"));
    let a = r.invoke("manifest-put", req).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    assert_eq!(a.header("docker-content-digest"), digest.to_string());
    assert_eq!(a.header("location"), format!("/v2/{REPO}/manifests/{digest}"));
    assert!(a.body.is_empty());
    let tags = r.call(Method::GET, &format!("/v2/{REPO}/tags/list"), &[], vec![]).await;
    assert_eq!(tags.json()["tags"], json!(["latest", "v1"]));
    let got = r.call(Method::GET, &format!("/v2/{REPO}/manifests/latest"), &[], vec![]).await;
    assert_eq!(got.body, manifest());
    r.work().await; // the usage refreshes its changes queued
}

#[tokio::test]
async fn manifest_delete_event_deletes_the_manifest() {
    let r = Functions::new();
    let digest = r.push_sample_image(&["v1"]).await;
    let a = r.invoke("manifest-delete", event("manifest-delete")).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text());
    assert!(a.body.is_empty());
    let gone = r.call(Method::GET, &format!("/v2/{REPO}/manifests/{digest}"), &[], vec![]).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let gone = r.call(Method::GET, &format!("/v2/{REPO}/manifests/v1"), &[], vec![]).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    r.work().await; // the usage refreshes its changes queued
}

#[tokio::test]
async fn blob_get_event_serves_the_blob() {
    // the embedded store cannot presign, so the bytes come back; under AWS this is a 307
    let r = Functions::new();
    let digest = r.push_blob(REPO, LAYER).await;
    let a = r.invoke("blob-get", event("blob-get")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, LAYER);
    assert_eq!(a.header("docker-content-digest"), digest.to_string());
    assert_eq!(a.header("content-length"), LAYER.len().to_string());
}

#[tokio::test]
async fn blob_delete_event_unlinks_the_blob() {
    let r = Functions::new();
    let digest = r.push_blob(REPO, CONFIG).await;
    let a = r.invoke("blob-delete", event("blob-delete")).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text());
    assert_eq!(a.header("docker-content-digest"), digest.to_string());
    let gone = r.call(Method::HEAD, &format!("/v2/{REPO}/blobs/{digest}"), &[], vec![]).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    r.work().await; // the usage refreshes its changes queued
}

#[tokio::test]
async fn upload_start_event_behind_a_named_stage_hands_out_a_staged_location() {
    let r = Functions::new();
    let a = r.invoke("upload-start", event("upload-start")).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text());
    assert_eq!(a.header("range"), "0-0");
    let id = a.header("docker-upload-uuid");
    assert_eq!(a.header("location"), format!("/prod/v2/{REPO}/blobs/uploads/{id}"));
    let status = r.call(Method::GET, &format!("/v2/{REPO}/blobs/uploads/{id}"), &[], vec![]).await;
    assert_eq!(status.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn upload_patch_event_appends_the_base64_decoded_body() {
    let r = Functions::new();
    r.open_session(PATCH_ID).await;
    let chunk: Vec<u8> = (0..=255u8).collect();
    let req = event("upload-patch");
    assert!(matches!(req.body(), Body::Binary(b) if *b == chunk), "lambda_http decodes isBase64Encoded bodies");
    let a = r.invoke("upload-patch", req).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text());
    assert_eq!(a.header("range"), "0-255");
    assert_eq!(a.header("location"), format!("/v2/{REPO}/blobs/uploads/{PATCH_ID}"));
    // the session holds exactly those bytes: completing with their digest succeeds
    let digest = Digest::sha256_of(&chunk);
    let done = r.call(Method::PUT, &format!("/v2/{REPO}/blobs/uploads/{PATCH_ID}?digest={digest}"), &[], vec![]).await;
    assert_eq!(done.status, StatusCode::CREATED, "{}", done.text());
}

#[tokio::test]
async fn upload_put_event_completes_the_upload() {
    let r = Functions::new();
    r.open_session(PUT_ID).await;
    let digest = Digest::sha256_of(WHOLE);
    let a = r.invoke("upload-put", event("upload-put")).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    assert_eq!(a.header("docker-content-digest"), digest.to_string());
    assert_eq!(a.header("location"), format!("/v2/{REPO}/blobs/{digest}"));
    let blob = r.call(Method::GET, &format!("/v2/{REPO}/blobs/{digest}"), &[], vec![]).await;
    assert_eq!(blob.body, WHOLE);
    assert_eq!(r.staged_uploads().await, 0);
}

#[tokio::test]
async fn upload_status_event_reports_progress() {
    let r = Functions::new();
    r.open_session(STATUS_ID).await;
    let uri = format!("/v2/{REPO}/blobs/uploads/{STATUS_ID}");
    let patched = r.call(Method::PATCH, &uri, &[("content-range", "0-4")], b"12345".to_vec()).await;
    assert_eq!(patched.status, StatusCode::ACCEPTED);
    let a = r.invoke("upload-status", event("upload-status")).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text());
    assert_eq!(a.header("range"), "0-4");
    assert_eq!(a.header("docker-upload-uuid"), STATUS_ID);
    assert_eq!(a.header("location"), uri);
}

#[tokio::test]
async fn upload_cancel_event_drops_the_session_and_its_bytes() {
    let r = Functions::new();
    r.open_session(CANCEL_ID).await;
    let uri = format!("/v2/{REPO}/blobs/uploads/{CANCEL_ID}");
    r.call(Method::PATCH, &uri, &[], b"some staged bytes".to_vec()).await;
    assert_eq!(r.staged_uploads().await, 1);
    let a = r.invoke("upload-cancel", event("upload-cancel")).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text());
    assert_eq!(r.staged_uploads().await, 0);
    let gone = r.call(Method::GET, &uri, &[], vec![]).await;
    assert_eq!(gone.code(), "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn referrers_event_lists_the_filtered_referrers() {
    let r = Functions::new();
    let subject = r.push_sample_image(&["v1"]).await;
    let empty = r.push_blob(REPO, b"{}").await;
    let referrer = |artifact_type: &str| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"{artifact_type}",
            "config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{empty}","size":2}},"layers":[],
            "subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{subject}","size":{}}}}}"#,
            manifest().len()
        )
    };
    let sbom = referrer("application/vnd.example.sbom.v1");
    let signature = referrer("application/vnd.example.signature.v1");
    for m in [&sbom, &signature] {
        let uri = format!("/v2/{REPO}/manifests/{}", Digest::sha256_of(m.as_bytes()));
        let a = r.call(Method::PUT, &uri, &[("content-type", OCI_MANIFEST)], m.as_bytes().to_vec()).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    }
    let a = r.invoke("referrers", event("referrers")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.header("content-type"), OCI_INDEX);
    assert_eq!(a.header("oci-filters-applied"), "artifactType");
    let index = a.json();
    assert_eq!(index["mediaType"], OCI_INDEX);
    assert_eq!(
        index["manifests"],
        json!([{
            "mediaType": OCI_MANIFEST,
            "digest": Digest::sha256_of(sbom.as_bytes()).to_string(),
            "size": sbom.len(),
            "artifactType": "application/vnd.example.sbom.v1",
        }])
    );
    r.work().await; // the usage refreshes its changes queued
}

#[tokio::test]
async fn policy_and_gc_events_are_served_by_their_functions() {
    let r = Functions::new();
    let a = r.invoke("api-cleanup-rules", event("api-cleanup-rules")).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    assert_eq!(a.header("content-type"), "application/json");
    assert_eq!(
        (a.json()["id"].clone(), a.json()["image"].clone(), a.json()["keep"].clone()),
        (json!("c1"), json!("app/**"), json!("latest-pushed:10"))
    );
    let a = r.invoke("api-cleanup-rule", event("api-cleanup-rule")).await;
    assert_eq!((a.status, a.json()["enabled"].clone()), (StatusCode::OK, json!(false)));
    let a = r.invoke("api-cleanup-schedule", event("api-cleanup-schedule")).await;
    assert_eq!((a.status, a.json()["cron"].clone()), (StatusCode::OK, json!("0 3 * * *")));
    assert!(a.json()["next_run_at"].as_i64().unwrap() > r.now());
    let a = r.invoke("api-cleanup-runs", event("api-cleanup-runs")).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text());
    assert_eq!((a.json()["status"].clone(), a.json()["dry_run"].clone()), (json!("queued"), json!(true)));
    // the run event names a fixed id: point it at the run just started
    let fixed = event_json("api-cleanup-run")["rawPath"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    let text = event_text("api-cleanup-run").replace(&fixed, a.json()["id"].as_str().unwrap());
    let a = r.invoke("api-cleanup-run", lambda_http::request::from_str(&text).unwrap()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!((a.json()["decisions"].clone(), a.json()["next_chunk"].clone()), (json!([]), Value::Null));
    let a = r.invoke("api-cleanup-run", event("api-cleanup-run")).await;
    assert_eq!((a.status, a.code()), (StatusCode::NOT_FOUND, "NOT_FOUND".to_string()));
    let a = r.invoke("api-protection-rules", event("api-protection-rules")).await;
    assert_eq!((a.status, a.json()["id"].clone()), (StatusCode::CREATED, json!("p1")));
    let a = r.invoke("api-protection-rule", event("api-protection-rule")).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text());
    let a = r.invoke("api-gc-runs", event("api-gc-runs")).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text());
    let fixed = event_json("api-gc-run")["rawPath"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    let text = event_text("api-gc-run").replace(&fixed, a.json()["id"].as_str().unwrap());
    let a = r.invoke("api-gc-run", lambda_http::request::from_str(&text).unwrap()).await;
    assert_eq!((a.status, a.json()["status"].clone()), (StatusCode::OK, json!("queued")));
    // both runs' jobs were enqueued for the job worker
    let kinds: Vec<String> = r.discard_pending_jobs().await.into_iter().map(|j| j.kind).collect();
    assert_eq!(kinds, [berth::policy::cleanup::JOB, berth::gc::GC_JOB]);
}

#[tokio::test]
async fn an_event_for_another_route_is_unsupported() {
    let r = Functions::new();
    for (i, spec) in ENDPOINTS.iter().enumerate() {
        let other = ENDPOINTS[(i + 1) % ENDPOINTS.len()].name;
        let a = r.invoke(other, event(spec.name)).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{} sent to {other}", spec.name);
        let (code, detail) = (a.code(), a.detail());
        assert_eq!(code, "UNSUPPORTED");
        assert!(detail.contains(other) && detail.contains(spec.name), "{detail}");
    }
}

#[tokio::test]
async fn query_parameters_reach_the_handler_without_a_raw_query_string() {
    // an event without rawQueryString (a hand-written test event, an older integration) still
    // carries queryStringParameters; repeated keys must survive the rebuild
    let r = Functions::new();
    r.push_blob(REPO, CONFIG).await;
    r.push_blob(REPO, LAYER).await;
    let mut json = event_json("manifest-put");
    json.as_object_mut().unwrap().remove("rawQueryString");
    json["queryStringParameters"] = json!({ "tag": "v1,latest" });
    let parsed = request_of(&json);
    assert_eq!(parsed.uri().query(), None);
    let mut params = std::collections::HashMap::new();
    params.insert("tag".to_string(), vec!["v1".to_string(), "latest".to_string()]);
    let req = parsed.with_query_string_parameters(params);
    let a = r.invoke("manifest-put", req).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let tags = r.call(Method::GET, &format!("/v2/{REPO}/tags/list"), &[], vec![]).await;
    assert_eq!(tags.json()["tags"], json!(["latest", "v1"]));
    r.work().await; // the usage refreshes its changes queued
}

#[tokio::test]
async fn a_response_too_big_for_lambda_answers_500() {
    let r = Functions::new();
    let big = vec![7u8; berth::lambda::MAX_RESPONSE_BODY + 1];
    let digest = r.push_blob(REPO, &big).await;
    let text = event_text("blob-get").replace(&Digest::sha256_of(LAYER).to_string(), &digest.to_string());
    let a = r.invoke("blob-get", lambda_http::request::from_str(&text).unwrap()).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(a.code(), "UNKNOWN");
    assert_eq!(a.header("docker-content-digest"), "", "no header of the abandoned answer leaks");
    // a body just under the limit is fine
    let fits = vec![8u8; berth::lambda::MAX_RESPONSE_BODY];
    let digest = r.push_blob(REPO, &fits).await;
    let text = event_text("blob-get").replace(&Digest::sha256_of(LAYER).to_string(), &digest.to_string());
    let a = r.invoke("blob-get", lambda_http::request::from_str(&text).unwrap()).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body.len(), fits.len());
}

// --- job functions ------------------------------------------------------------------------------

fn sqs_event_json() -> Value {
    let path = repo_root().join("events/sqs/job-worker.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn job_worker_event_reclaims_stale_uploads() {
    let r = Functions::new();
    let a = r.call(Method::POST, &format!("/v2/{REPO}/blobs/uploads/"), &[], vec![]).await;
    let location = a.header("location").to_string();
    r.call(Method::PATCH, &location, &[], b"abandoned bytes".to_vec()).await;
    assert_eq!(r.staged_uploads().await, 1);
    r.advance(2 * 24 * 3600); // the session is stale now
    let event: SqsEvent = serde_json::from_value(sqs_event_json()).unwrap();
    let response = process_job_batch(&r.app, event).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(r.staged_uploads().await, 0);
    let gone = r.call(Method::GET, &location, &[], vec![]).await;
    assert_eq!(gone.code(), "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn job_worker_reports_only_the_records_that_failed() {
    let r = Functions::new();
    let mut json = sqs_event_json();
    let good = json["Records"][0].clone();
    let mut malformed = good.clone();
    malformed["messageId"] = "malformed-1".into();
    malformed["body"] = "{not a job".into();
    let mut unknown = good.clone();
    unknown["messageId"] = "unknown-kind-1".into();
    unknown["body"] = json!({ "kind": "no-such-job", "payload": null }).to_string().into();
    json["Records"] = json!([malformed, good, unknown]);
    let event: SqsEvent = serde_json::from_value(json).unwrap();
    let response = process_job_batch(&r.app, event).await;
    let failed: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, ["malformed-1", "unknown-kind-1"]);
}

#[tokio::test]
async fn job_worker_delays_a_job_that_is_not_due_yet() {
    // a job delayed past SQS's 900 s limit arrives early with a not-before attribute
    let r = Functions::new();
    let a = r.call(Method::POST, &format!("/v2/{REPO}/blobs/uploads/"), &[], vec![]).await;
    r.call(Method::PATCH, a.header("location"), &[], b"abandoned bytes".to_vec()).await;
    r.advance(2 * 24 * 3600); // the session is stale now
    let sent_before = r.sent_jobs().len();
    let due = |offset_s: i64| {
        let mut json = sqs_event_json();
        let due_ms = (r.now() + offset_s) * 1000;
        json["Records"][0]["messageAttributes"] = json!({
            berth::lambda::NOT_BEFORE_ATTRIBUTE: { "stringValue": due_ms.to_string(), "dataType": "Number" }
        });
        serde_json::from_value::<SqsEvent>(json).unwrap()
    };
    let response = process_job_batch(&r.app, due(3600)).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(r.staged_uploads().await, 1, "the job did not run early");
    let sent = r.sent_jobs().split_off(sent_before);
    assert_eq!(sent.len(), 1, "it is sent again");
    assert_eq!(sent[0].0.kind, berth::jobs::EXPIRE_UPLOADS);
    assert!(sent[0].1 > Duration::from_secs(3590) && sent[0].1 <= Duration::from_secs(3600), "{:?}", sent[0].1);
    let response = process_job_batch(&r.app, due(-1)).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(r.staged_uploads().await, 0, "a due job runs");
    assert_eq!(r.sent_jobs().len(), sent_before + 1, "and is not sent again");
    // the copy sent back to wait out its hour is not this test's business
    assert_eq!(r.discard_pending_jobs().await, [sent[0].0.clone()]);
}

#[tokio::test]
async fn scheduler_event_enqueues_housekeeping() {
    let r = Functions::new();
    let path = repo_root().join("events/eventbridge/job-scheduler.json");
    let event: EventBridgeEvent = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(event.detail_type, "Scheduled Event");
    // upload expiry and the event relay are due at once on a new deployment
    assert_eq!(schedule_housekeeping(&r.app, &event).await.unwrap(), 2);
    let mut jobs = r.discard_pending_jobs().await;
    jobs.sort_by(|a, b| a.kind.cmp(&b.kind));
    let kinds: Vec<&str> = jobs.iter().map(|j| j.kind.as_str()).collect();
    assert_eq!(kinds, [berth::jobs::EXPIRE_UPLOADS, "relay-events"]);
    // the built-in upload-expiry schedule fired for "now", once: a second tick claims nothing
    assert_eq!(jobs[0].payload["due"], json!(r.now()));
    assert_eq!(schedule_housekeeping(&r.app, &event).await.unwrap(), 0);
    // and the enqueued job is what the worker runs: its SQS body is the job as JSON
    let body = serde_json::to_value(&jobs[0]).unwrap();
    let sqs_body: Value = serde_json::from_str(sqs_event_json()["Records"][0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["kind"], sqs_body["kind"]);
}

// --- coverage -----------------------------------------------------------------------------------

#[test]
fn every_route_has_a_function_and_an_event_and_nothing_else_does() {
    let root = repo_root();
    for name in ROUTE_NAMES {
        let manifest = std::fs::read_to_string(root.join("functions").join(name).join("Cargo.toml"))
            .unwrap_or_else(|e| panic!("functions/{name}/Cargo.toml: {e}"));
        assert!(manifest.contains(&format!("name = \"{name}\"")), "functions/{name}: package and binary are {name}");
        let main = std::fs::read_to_string(root.join("functions").join(name).join("src/main.rs")).unwrap();
        // main names its endpoint by path (`berth::route_function!(berth::api::manifests::GET);`);
        // that constant is declared with this very name
        let path = main
            .split("berth::route_function!(berth::api::")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .unwrap_or_else(|| panic!("functions/{name}: main is berth::route_function!(berth::api::…)"));
        let (module, constant) = path.rsplit_once("::").unwrap();
        let source =
            std::fs::read_to_string(root.join("shared/src/api").join(format!("{}.rs", module.replace("::", "/"))))
                .unwrap_or_else(|e| panic!("functions/{name}: {path}: {e}"));
        assert!(
            source.contains(&format!("pub const {constant}: Endpoint = Endpoint {{\n    name: \"{name}\",")),
            "functions/{name} serves {path}, which is not the endpoint named {name}"
        );
        // the event is a request for this very route
        let json = event_json(name);
        let method = Method::from_bytes(json["requestContext"]["http"]["method"].as_str().unwrap().as_bytes()).unwrap();
        let stage = json["requestContext"]["stage"].as_str();
        let path = berth::lambda::strip_stage(json["rawPath"].as_str().unwrap(), stage);
        let route = api::Route::parse(&method, path, None).unwrap_or_else(|e| panic!("{name}.json: {e:?}"));
        assert_eq!(route.name(), name, "events/apigw-v2/{name}.json");
        assert_eq!(json["version"], "2.0");
    }
    for dir in std::fs::read_dir(root.join("functions")).unwrap() {
        let dir = dir.unwrap();
        if !dir.file_type().unwrap().is_dir() {
            continue;
        }
        let name = dir.file_name().into_string().unwrap();
        assert!(
            ROUTE_NAMES.contains(&name.as_str()) || name.starts_with("job-"),
            "functions/{name} is neither a route nor a job-* function"
        );
        assert!(dir.path().join("Cargo.toml").is_file(), "functions/{name}/Cargo.toml");
    }
    for file in std::fs::read_dir(root.join("events/apigw-v2")).unwrap() {
        let name = file.unwrap().file_name().into_string().unwrap();
        let route = name.strip_suffix(".json").unwrap_or_else(|| panic!("events/apigw-v2/{name} is not JSON"));
        assert!(ROUTE_NAMES.contains(&route), "events/apigw-v2/{name} names no route");
    }
    for job in ["job-worker", "job-scheduler"] {
        assert!(root.join("functions").join(job).join("Cargo.toml").is_file(), "functions/{job}");
    }
    assert!(root.join("events/sqs/job-worker.json").is_file());
    assert!(root.join("events/eventbridge/job-scheduler.json").is_file());
}

// --- ports: each function uses only the ports its endpoint declares -----------------------------

/// The ports handlers used, recorded by [`PortBlobs`] and [`PortMeta`] around the real adapters:
/// what the Lambda function is granted (Terraform derives IAM from the declared ports) must cover
/// what it uses.
#[derive(Default)]
struct PortUse {
    used: Mutex<std::collections::BTreeSet<String>>,
}

impl PortUse {
    fn note(&self, port: Port) {
        self.used.lock().unwrap().insert(serde_json::to_value(port).unwrap().as_str().unwrap().to_string());
    }
    fn note_all(&self, ports: &[Port]) {
        ports.iter().for_each(|port| self.note(*port));
    }
    fn take(&self) -> std::collections::BTreeSet<String> {
        std::mem::take(&mut *self.used.lock().unwrap())
    }
}

struct PortBlobs {
    inner: Arc<dyn berth::storage::BlobStore>,
    use_: Arc<PortUse>,
}

#[async_trait::async_trait]
impl berth::storage::BlobStore for PortBlobs {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, berth::storage::StorageError> {
        self.use_.note_all(blob_calls::STAT);
        self.inner.stat(digest).await
    }
    async fn read(
        &self,
        digest: &Digest,
        range: Option<berth::oci::ByteRange>,
    ) -> Result<berth::storage::ByteStream, berth::storage::StorageError> {
        self.use_.note_all(blob_calls::READ);
        self.inner.read(digest, range).await
    }
    async fn put(&self, digest: &Digest, bytes: bytes::Bytes) -> Result<(), berth::storage::StorageError> {
        self.use_.note_all(blob_calls::PUT);
        self.inner.put(digest, bytes).await
    }
    async fn delete(&self, digest: &Digest) -> Result<(), berth::storage::StorageError> {
        self.use_.note_all(blob_calls::DELETE);
        self.inner.delete(digest).await
    }
    async fn open_upload(
        &self,
        id: &UploadId,
        offset: u64,
        staging: &[u8],
    ) -> Result<Box<dyn berth::storage::UploadWriter>, berth::storage::StorageError> {
        self.use_.note_all(blob_calls::OPEN_UPLOAD);
        self.inner.open_upload(id, offset, staging).await
    }
    async fn read_upload(
        &self,
        id: &UploadId,
        len: u64,
        staging: &[u8],
    ) -> Result<berth::storage::ByteStream, berth::storage::StorageError> {
        self.use_.note_all(blob_calls::READ_UPLOAD);
        self.inner.read_upload(id, len, staging).await
    }
    async fn commit_upload(
        &self,
        id: &UploadId,
        len: u64,
        staging: &[u8],
        digest: &Digest,
    ) -> Result<(), berth::storage::StorageError> {
        self.use_.note_all(blob_calls::COMMIT_UPLOAD);
        self.inner.commit_upload(id, len, staging, digest).await
    }
    async fn presign_read(
        &self,
        digest: &Digest,
        expiry: Duration,
    ) -> Result<Option<String>, berth::storage::StorageError> {
        self.use_.note_all(blob_calls::PRESIGN_READ);
        self.inner.presign_read(digest, expiry).await
    }
    async fn abort_upload(&self, id: &UploadId) -> Result<(), berth::storage::StorageError> {
        self.use_.note_all(blob_calls::ABORT_UPLOAD);
        self.inner.abort_upload(id).await
    }
    async fn list_uploads(&self) -> Result<Vec<UploadId>, berth::storage::StorageError> {
        self.use_.note_all(blob_calls::LIST_UPLOADS);
        self.inner.list_uploads().await
    }
    async fn list_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<(Vec<berth::storage::StoredBlob>, bool), berth::storage::StorageError> {
        self.use_.note_all(blob_calls::LIST_BLOBS);
        self.inner.list_blobs(after, limit).await
    }
}

struct PortMeta {
    inner: Arc<dyn berth::metadata::MetadataStore>,
    use_: Arc<PortUse>,
}

impl PortMeta {
    fn write(&self) {
        self.use_.note(Port::MetadataWrite);
    }
}

#[async_trait::async_trait]
impl BlobLinks for PortMeta {
    async fn link_blob(&self, repo: &RepoName, digest: &Digest, size: u64, now: UnixTime) -> Result<(), MetaErr> {
        self.write();
        self.inner.link_blob(repo, digest, size, now).await
    }

    async fn linked_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>, MetaErr> {
        self.inner.linked_blob(repo, digest).await
    }

    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool, MetaErr> {
        self.write();
        self.inner.unlink_blob(repo, digest).await
    }

    async fn blob_referenced(&self, digest: &Digest) -> Result<bool, MetaErr> {
        self.inner.blob_referenced(digest).await
    }
}

#[async_trait::async_trait]
impl UploadSessions for PortMeta {
    async fn create_upload(&self, session: &UploadSession) -> Result<(), MetaErr> {
        self.write();
        self.inner.create_upload(session).await
    }

    async fn upload(&self, id: &UploadId) -> Result<Option<UploadSession>, MetaErr> {
        self.inner.upload(id).await
    }

    async fn advance_upload(&self, session: &UploadSession, expected_offset: u64) -> Result<(), MetaErr> {
        self.write();
        self.inner.advance_upload(session, expected_offset).await
    }

    async fn delete_upload(&self, id: &UploadId) -> Result<bool, MetaErr> {
        self.write();
        self.inner.delete_upload(id).await
    }

    async fn stale_uploads(&self, before: UnixTime) -> Result<Vec<UploadSession>, MetaErr> {
        self.inner.stale_uploads(before).await
    }
}

#[async_trait::async_trait]
impl Manifests for PortMeta {
    async fn put_manifest_noting(
        &self,
        record: &ManifestRecord,
        tags: &[berth::oci::Tag],
        events: &[berth::metadata::OutboxEntry],
    ) -> Result<(), MetaErr> {
        self.write();
        self.inner.put_manifest_noting(record, tags, events).await
    }

    async fn manifest(&self, repo: &RepoName, digest: &Digest) -> Result<Option<ManifestRecord>, MetaErr> {
        self.inner.manifest(repo, digest).await
    }

    async fn resolve_tag(&self, repo: &RepoName, tag: &berth::oci::Tag) -> Result<Option<ManifestRecord>, MetaErr> {
        self.inner.resolve_tag(repo, tag).await
    }

    async fn delete_manifest_noting(
        &self,
        repo: &RepoName,
        digest: &Digest,
        events: &[berth::metadata::OutboxEntry],
    ) -> Result<bool, MetaErr> {
        self.write();
        self.inner.delete_manifest_noting(repo, digest, events).await
    }

    async fn delete_tag_noting(
        &self,
        repo: &RepoName,
        tag: &berth::oci::Tag,
        events: &[berth::metadata::OutboxEntry],
    ) -> Result<bool, MetaErr> {
        self.write();
        self.inner.delete_tag_noting(repo, tag, events).await
    }

    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Option<berth::metadata::Page>, MetaErr> {
        self.inner.list_tags(repo, last, limit).await
    }

    async fn list_manifests(
        &self,
        repo: &RepoName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ManifestRecord>, bool), MetaErr> {
        self.inner.list_manifests(repo, after, limit).await
    }

    async fn tags_of(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<String>, MetaErr> {
        self.inner.tags_of(repo, digest).await
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ManifestRecord>, MetaErr> {
        self.inner.referrers(repo, subject, artifact_type).await
    }

    async fn record_pull(&self, repo: &RepoName, digest: &Digest, at: UnixTime) -> Result<(), MetaErr> {
        self.write();
        self.inner.record_pull(repo, digest, at).await
    }

    async fn record_scan_gate(&self, repo: &RepoName, digest: &Digest, gate: &str) -> Result<(), MetaErr> {
        self.write();
        self.inner.record_scan_gate(repo, digest, gate).await
    }

    async fn record_signatures(&self, repo: &RepoName, digest: &Digest, status: &str) -> Result<(), MetaErr> {
        self.write();
        self.inner.record_signatures(repo, digest, status).await
    }

    async fn parents(&self, repo: &RepoName, child: &Digest) -> Result<Vec<Digest>, MetaErr> {
        self.inner.parents(repo, child).await
    }
}

#[async_trait::async_trait]
impl Repositories for PortMeta {
    async fn repository_exists(&self, repo: &RepoName) -> Result<bool, MetaErr> {
        self.inner.repository_exists(repo).await
    }

    async fn list_repositories(&self, last: Option<&str>, limit: usize) -> Result<berth::metadata::Page, MetaErr> {
        self.inner.list_repositories(last, limit).await
    }

    async fn delete_repository(&self, repo: &RepoName) -> Result<bool, MetaErr> {
        self.write();
        self.inner.delete_repository(repo).await
    }

    async fn repository_usage(&self, repo: &RepoName) -> Result<(u64, u64), MetaErr> {
        self.inner.repository_usage(repo).await
    }
}

#[async_trait::async_trait]
impl Documents for PortMeta {
    async fn get_document(&self, collection: &str, id: &str) -> Result<Option<berth::metadata::Document>, MetaErr> {
        self.inner.get_document(collection, id).await
    }

    async fn put_document(
        &self,
        collection: &str,
        id: &str,
        body: &Value,
        expect: berth::metadata::Expect,
    ) -> Result<u64, MetaErr> {
        // the edge's own writes are granted to every function (edge_write)
        if !berth::api::endpoint::EDGE_WRITES.contains(&collection) {
            self.write();
        }
        self.inner.put_document(collection, id, body, expect).await
    }

    async fn delete_document(
        &self,
        collection: &str,
        id: &str,
        expect: berth::metadata::Expect,
    ) -> Result<bool, MetaErr> {
        self.write();
        self.inner.delete_document(collection, id, expect).await
    }

    async fn list_documents(
        &self,
        collection: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<berth::metadata::DocumentPage, MetaErr> {
        self.inner.list_documents(collection, prefix, after, limit).await
    }
}

#[async_trait::async_trait]
impl GcFences for PortMeta {
    async fn blob_links(&self, digest: &Digest) -> Result<Vec<berth::metadata::BlobLink>, MetaErr> {
        self.inner.blob_links(digest).await
    }

    async fn blob_used(&self, digest: &Digest, repo: Option<&RepoName>) -> Result<bool, MetaErr> {
        self.inner.blob_used(digest, repo).await
    }

    async fn unlink_if_unreferenced(
        &self,
        repo: &RepoName,
        digest: &Digest,
        linked_before: UnixTime,
    ) -> Result<bool, MetaErr> {
        self.write();
        self.inner.unlink_if_unreferenced(repo, digest, linked_before).await
    }

    async fn gc_generation(&self, digest: &Digest, now: UnixTime) -> Result<Option<u64>, MetaErr> {
        self.inner.gc_generation(digest, now).await
    }

    async fn link_blob_since(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        now: UnixTime,
        generation: u64,
    ) -> Result<(), MetaErr> {
        self.write();
        self.inner.link_blob_since(repo, digest, size, now, generation).await
    }

    async fn fence_blob(&self, digest: &Digest, now: UnixTime) -> Result<Option<u64>, MetaErr> {
        self.write();
        self.inner.fence_blob(digest, now).await
    }

    async fn unfence_blob(&self, digest: &Digest, generation: u64) -> Result<(), MetaErr> {
        self.write();
        self.inner.unfence_blob(digest, generation).await
    }
}

type MetaErr = berth::metadata::MetadataError;

#[tokio::test]
async fn read_only_routes_write_only_the_edge_documents() {
    // these functions are granted read-only DynamoDB beyond the edge's writes (the key's last-use
    // stamp, audit entries, the signing key): serving their events must use no port at all
    let r = Functions::new();
    r.push_sample_image(&["v1"]).await;
    for function in ["base", "catalog", "tags-list", "api-tags", "api-audit", "console"] {
        let a = r.invoke(function, event(function)).await;
        assert_eq!(a.status, StatusCode::OK, "{function}: {}", a.text());
        if function == "console" {
            assert!(a.text().contains("sessionStorage"), "the console's script");
            assert_eq!(a.headers["content-security-policy"], berth::api::console::CONTENT_SECURITY_POLICY);
        }
        let used = r.last_ports.lock().unwrap().clone();
        assert!(used.is_empty(), "{function} used {used:?}");
    }
    r.work().await; // the usage refreshes its changes queued
}

#[test]
fn functions_build_only_the_clients_their_ports_need() {
    // a function gets an S3 blob store if it holds a blob or upload port and SQS if it sends jobs
    // (`berth::aws::app_with`); the rest of the 60 get neither client
    let blobs = Port::mask(Port::BLOB_PORTS);
    let held = |name: &str| Port::mask(endpoint(name).ports);
    let cases = [
        ("tags-list", false, false),
        ("token", false, false),
        // a pull through a cache-type registry queues the caching of a blob not stored yet
        ("blob-get", true, true),
        ("upload-patch", true, false),
        ("api-gc-runs", false, true),
        ("manifest-put", true, true),
    ];
    for (name, s3, sqs) in cases {
        assert_eq!((held(name) & blobs != 0, held(name) & Port::JobsSend.bit() != 0), (s3, sqs), "{name}");
    }
    let without_s3 = ENDPOINTS.iter().filter(|e| Port::mask(e.ports) & blobs == 0).count();
    let without_sqs = ENDPOINTS.iter().filter(|e| !e.uses(Port::JobsSend)).count();
    assert_eq!((without_s3, without_sqs), (45, 42));
}

#[tokio::test]
async fn management_functions_answer_their_events_within_their_ports() {
    // the token function's and each management function's sample event, in an order where each makes sense; `invoke`
    // fails the test if a handler uses a port its endpoint does not declare (its IAM role and its
    // Lambda wiring would refuse it on AWS)
    let r = Functions::new();
    let digest = r.push_sample_image(&["v1"]).await;
    // images are listed before any storage recount ran: the listing counts and writes usage
    let steps: [(&str, StatusCode); 19] = [
        ("token", StatusCode::OK),
        ("api-images", StatusCode::OK),
        ("api-registries", StatusCode::OK),
        ("api-registry", StatusCode::OK),
        ("api-artifacts", StatusCode::OK),
        ("api-artifact", StatusCode::OK),
        ("api-tags", StatusCode::OK),
        ("api-tag", StatusCode::OK),
        ("api-users", StatusCode::CREATED),
        ("api-user", StatusCode::OK),
        ("api-keys", StatusCode::OK),
        ("api-key", StatusCode::NOT_FOUND),
        ("api-openapi", StatusCode::OK),
        ("api-audit", StatusCode::OK),
        ("api-trust", StatusCode::OK),
        ("api-trust-keys", StatusCode::CREATED),
        ("api-trust-key", StatusCode::NO_CONTENT),
        ("api-image", StatusCode::OK),
        ("api-key-rotate", StatusCode::OK),
    ];
    for (function, status) in steps {
        let a = r.invoke(function, event(function)).await;
        assert_eq!(a.status, status, "{function}: {}", a.text());
        match function {
            "token" => {
                // a token for the event's scope, granted in full to the administrator
                let token = a.json()["token"].as_str().unwrap().to_string();
                let claims = token.split('.').nth(1).unwrap();
                use base64::Engine;
                let claims: Value =
                    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).unwrap())
                        .unwrap();
                assert_eq!(claims["access"][0]["name"], "team/app");
                assert_eq!(claims["access"][0]["actions"], json!(["pull", "push"]));
            }
            "api-images" => {
                let items = a.json()["items"].clone();
                assert_eq!(items[0]["name"], "team/app");
                assert!(items[0]["storage_bytes"].as_u64().unwrap() >= (CONFIG.len() + LAYER.len()) as u64);
            }
            "api-artifact" => {
                assert_eq!(a.json()["digest"], digest.to_string());
                assert_eq!(a.json()["signature"]["signed"], false, "the sample image is not signed");
            }
            "api-trust" => assert_eq!(a.json()["mode"], "trusted-keys"),
            "api-trust-keys" => {
                assert_eq!(a.json()["id"], "sha256:1fd5717c5390476eda5f8d6268bb8cb0f6e6a2a03d21113d469f59e4c9e53b3e");
                assert_eq!(
                    (a.json()["algorithm"].as_str(), a.json()["name"].as_str()),
                    (Some("ecdsa-p256"), Some("release-signing"))
                );
            }
            "api-tag" => assert_eq!(a.json()["digest"], digest.to_string()),
            "api-users" => assert_eq!(a.json()["name"], "ci"),
            "api-image" => {
                let gone = r.call(Method::GET, &format!("/v2/{REPO}/manifests/v1"), &[], vec![]).await;
                assert_eq!(gone.status, StatusCode::NOT_FOUND);
            }
            "api-key-rotate" => assert!(a.json()["secret_key"].as_str().is_some_and(|s| s.len() >= 32)),
            _ => {}
        }
    }
    r.work().await; // the usage refreshes its changes queued

    // each key change also queued a second look once every process's cached keys expired
    let later: Vec<String> = r.discard_pending_jobs().await.into_iter().map(|j| j.kind).collect();
    assert_eq!(later, ["refresh-signatures", "refresh-signatures"]);
}
