//! In-process tests of the registry API: requests go through `api::handle` (the same function
//! `berth serve` and the Lambda functions call) on a fresh embedded store, and every answer's
//! status, headers and bytes are checked.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use berth::oci::Digest;
use common::registry::{image_manifest, Answer, TestRegistry, OCI_INDEX, OCI_MANIFEST};
use common::snapshot::{assert_snapshots, without_uuids};
use http::{Method, StatusCode};
use serde_json::json;

/// Pushes a `{}` config and an 11-byte layer as `repo:tag`; the manifest and its digest.
async fn simple_image(r: &TestRegistry, repo: &str, tag: &str) -> (Vec<u8>, Digest) {
    r.push_image_of(repo, Some(tag), b"{}", &[b"layer bytes"]).await
}

#[tokio::test]
async fn base_answers_with_the_api_version() {
    let r = TestRegistry::embedded();
    let a = r.call(Method::GET, "/v2/", &[], vec![]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json(), json!({}));
}

#[tokio::test]
async fn chunked_upload_with_out_of_order_chunk_and_resume() {
    let r = TestRegistry::embedded();
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let digest = Digest::sha256_of(&data);
    let a = r.call(Method::POST, "/v2/a/blobs/uploads/", &[("content-length", "0")], vec![]).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(a.header("range"), "0-0");
    let loc = a.header("location").to_string();
    let a = r.call(Method::PATCH, &loc, &[("content-range", "0-999")], data[..1000].to_vec()).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(a.header("range"), "0-999");
    // a chunk that skips ahead is refused and the session keeps its place
    let a = r.call(Method::PATCH, &loc, &[("content-range", "2000-2999")], data[2000..].to_vec()).await;
    assert_eq!(a.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(a.code(), "BLOB_UPLOAD_INVALID");
    // overlapping too
    let a = r.call(Method::PATCH, &loc, &[("content-range", "500-1499")], data[500..1500].to_vec()).await;
    assert_eq!(a.status, StatusCode::RANGE_NOT_SATISFIABLE);
    let a = r.call(Method::GET, &loc, &[], vec![]).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(a.header("range"), "0-999");
    // a body longer than its Content-Range is refused without moving the offset
    let a = r.call(Method::PATCH, &loc, &[("content-range", "1000-1009")], data[1000..1100].to_vec()).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.code(), "SIZE_INVALID");
    let a = r.call(Method::PATCH, &loc, &[("content-range", "1000-1999")], data[1000..2000].to_vec()).await;
    assert_eq!(a.header("range"), "0-1999");
    // the last chunk rides on the PUT
    let put = format!("{loc}?digest={digest}");
    let a = r.call(Method::PUT, &put, &[("content-range", "2000-2999")], data[2000..].to_vec()).await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.header("docker-content-digest"), digest.to_string());
    let a = r.call(Method::GET, &format!("/v2/a/blobs/{digest}"), &[], vec![]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, data);
    assert_eq!(r.staged_uploads().await, 0);
    let a = r.call(Method::GET, &loc, &[], vec![]).await;
    assert_eq!(a.code(), "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn wrong_digest_leaves_nothing_visible() {
    let r = TestRegistry::embedded();
    let wrong = Digest::sha256_of(b"something else");
    let a = r.call(Method::POST, &format!("/v2/a/blobs/uploads/?digest={wrong}"), &[], b"actual".to_vec()).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.code(), "DIGEST_INVALID");
    let a = r.call(Method::HEAD, &format!("/v2/a/blobs/{wrong}"), &[], vec![]).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let actual = Digest::sha256_of(b"actual");
    let a = r.call(Method::HEAD, &format!("/v2/a/blobs/{actual}"), &[], vec![]).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(r.staged_uploads().await, 0);
}

#[tokio::test]
async fn sha512_blobs_and_range_reads() {
    let r = TestRegistry::embedded();
    let data = b"0123456789abcdefghij".to_vec();
    let digest = Digest::of(berth::oci::Algorithm::Sha512, &data);
    let a = r.call(Method::POST, "/v2/a/blobs/uploads/", &[], vec![]).await;
    let loc = a.header("location").to_string();
    let a = r.call(Method::PUT, &format!("{loc}?digest={digest}"), &[], data.clone()).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&a.body));
    let a = r.call(Method::GET, &format!("/v2/a/blobs/{digest}"), &[("range", "bytes=10-14")], vec![]).await;
    assert_eq!(a.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(a.header("content-range"), "bytes 10-14/20");
    assert_eq!(a.body, b"abcde");
    let a = r.call(Method::GET, &format!("/v2/a/blobs/{digest}"), &[("range", "bytes=20-")], vec![]).await;
    assert_eq!(a.status, StatusCode::RANGE_NOT_SATISFIABLE);
    let a = r.call(Method::HEAD, &format!("/v2/a/blobs/{digest}"), &[], vec![]).await;
    assert_eq!(a.header("content-length"), "20");
    assert!(a.body.is_empty());
}

#[tokio::test]
async fn manifests_keep_exact_bytes_and_refuse_dangling_references() {
    let r = TestRegistry::embedded();
    let (m, d) = simple_image(&r, "app", "v1").await;
    for reference in ["v1".to_string(), d.to_string()] {
        let a = r.call(Method::GET, &format!("/v2/app/manifests/{reference}"), &[], vec![]).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.body, m);
        assert_eq!(a.header("content-type"), OCI_MANIFEST);
        assert_eq!(a.header("docker-content-digest"), d.to_string());
    }
    let missing = Digest::sha256_of(b"never pushed");
    let config = Digest::sha256_of(b"{}");
    let bad = image_manifest((&config, 2), &[(&missing, 12)], None);
    let a = r.push_manifest("app", "v2", OCI_MANIFEST, &bad).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.code(), "MANIFEST_BLOB_UNKNOWN");
    let a = r.push_manifest("app", "v3", OCI_MANIFEST, b"{ not json").await;
    assert_eq!(a.code(), "MANIFEST_INVALID");
    let a = r.call(Method::GET, "/v2/app/tags/list", &[], vec![]).await;
    assert_eq!(a.json()["tags"], json!(["v1"]));
    // a blob of another repository is not visible here
    let a = r.push_manifest("other", "v1", OCI_MANIFEST, &m).await;
    assert_eq!(a.code(), "MANIFEST_BLOB_UNKNOWN");
    r.work().await; // the usage refreshes its pushes queued
}

on_both_backends!(index_children_must_exist_and_protect_their_deletion);

async fn index_children_must_exist_and_protect_their_deletion(r: TestRegistry) {
    let (m, d) = simple_image(&r, "multi", "amd64").await;
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":{},"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
        m.len()
    );
    let a = r.push_manifest("multi", "latest", OCI_INDEX, index.as_bytes()).await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = r.call(Method::DELETE, &format!("/v2/multi/manifests/{d}"), &[], vec![]).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    let idx = Digest::sha256_of(index.as_bytes());
    let a = r.call(Method::DELETE, &format!("/v2/multi/manifests/{idx}"), &[], vec![]).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let a = r.call(Method::GET, "/v2/multi/manifests/latest", &[], vec![]).await;
    assert_eq!(a.code(), "MANIFEST_UNKNOWN");
    let a = r.call(Method::DELETE, &format!("/v2/multi/manifests/{d}"), &[], vec![]).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let a = r.push_manifest("multi", "again", OCI_INDEX, index.as_bytes()).await;
    assert_eq!(a.code(), "MANIFEST_BLOB_UNKNOWN");
    r.work().await; // the usage refreshes its pushes queued
}

on_both_backends!(push_by_digest_with_several_tags_and_referrers);

async fn push_by_digest_with_several_tags_and_referrers(r: TestRegistry) {
    let (m, d) = simple_image(&r, "app", "base").await;
    let empty = r.push_blob("app", b"{}").await;
    let sbom = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/vnd.example.sbom.v1",
        "config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{empty}","size":2}},"layers":[],
        "subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":{}}},"annotations":{{"org.example":"yes"}}}}"#,
        m.len()
    );
    let sd = Digest::sha256_of(sbom.as_bytes());
    let a = r.push_manifest("app", &format!("{sd}?tag=s1&tag=s2"), OCI_MANIFEST, sbom.as_bytes()).await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.header("oci-subject"), d.to_string());
    let a = r.call(Method::GET, "/v2/app/tags/list", &[], vec![]).await;
    assert_eq!(a.json()["tags"], json!(["base", "s1", "s2"]));
    let a = r.call(Method::GET, &format!("/v2/app/referrers/{d}"), &[], vec![]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("content-type"), OCI_INDEX);
    let list = a.json();
    assert_eq!(list["manifests"][0]["digest"], sd.to_string());
    assert_eq!(list["manifests"][0]["artifactType"], "application/vnd.example.sbom.v1");
    assert_eq!(list["manifests"][0]["annotations"]["org.example"], "yes");
    assert_eq!(list["manifests"][0]["size"], sbom.len());
    let filtered = format!("/v2/app/referrers/{d}?artifactType=application/vnd.example.sbom.v1");
    let a = r.call(Method::GET, &filtered, &[], vec![]).await;
    assert_eq!(a.header("oci-filters-applied"), "artifactType");
    assert_eq!(a.json()["manifests"].as_array().unwrap().len(), 1);
    let a = r.call(Method::GET, &format!("/v2/app/referrers/{d}?artifactType=other"), &[], vec![]).await;
    assert_eq!(a.json()["manifests"], json!([]));
    // a wrong digest in the URL is refused
    let a = r.push_manifest("app", &d.to_string(), OCI_MANIFEST, sbom.as_bytes()).await;
    assert_eq!(a.code(), "DIGEST_INVALID");
    r.work().await; // the usage refreshes its pushes queued
}

on_both_backends!(tag_and_catalog_pagination_with_link_headers);

async fn tag_and_catalog_pagination_with_link_headers(r: TestRegistry) {
    for repo in ["r1", "r2", "r3"] {
        for tag in ["a", "b", "c", "d", "e"] {
            simple_image(&r, repo, tag).await;
        }
    }
    let mut seen = vec![];
    let mut next = Some("/v2/r2/tags/list?n=2".to_string());
    while let Some(uri) = next {
        let a = r.call(Method::GET, &uri, &[], vec![]).await;
        seen.extend(a.json()["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()));
        next = a.header("link").strip_prefix('<').and_then(|l| l.split_once('>')).map(|(u, _)| u.to_string());
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    let a = r.call(Method::GET, "/v2/_catalog?n=2", &[], vec![]).await;
    assert_eq!(a.json()["repositories"], json!(["r1", "r2"]));
    assert_eq!(a.header("link"), "</v2/_catalog?n=2&last=r2>; rel=\"next\"");
    let a = r.call(Method::GET, "/v2/_catalog?n=2&last=r2", &[], vec![]).await;
    assert_eq!(a.json()["repositories"], json!(["r3"]));
    assert_eq!(a.header("link"), "");
    let a = r.call(Method::GET, "/v2/nope/tags/list", &[], vec![]).await;
    assert_eq!(a.code(), "NAME_UNKNOWN");
    r.work().await; // the usage refreshes its pushes queued
}

#[tokio::test]
async fn mount_links_or_falls_back_to_a_session() {
    let r = TestRegistry::embedded();
    let digest = r.push_blob("src", b"shared layer").await;
    let a = r.call(Method::POST, &format!("/v2/dst/blobs/uploads/?mount={digest}&from=src"), &[], vec![]).await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.header("location"), format!("/v2/dst/blobs/{digest}"));
    let a = r.call(Method::GET, &format!("/v2/dst/blobs/{digest}"), &[], vec![]).await;
    assert_eq!(a.body, b"shared layer");
    let unknown = Digest::sha256_of(b"nowhere");
    let a = r.call(Method::POST, &format!("/v2/dst/blobs/uploads/?mount={unknown}&from=src"), &[], vec![]).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert!(a.header("location").starts_with("/v2/dst/blobs/uploads/"));
}

#[tokio::test]
async fn cancel_and_expiry_reclaim_staged_data() {
    let r = TestRegistry::embedded().with_settings(|s| s.upload_expiry = std::time::Duration::ZERO);
    let a = r.call(Method::POST, "/v2/a/blobs/uploads/", &[], vec![]).await;
    let loc = a.header("location").to_string();
    r.call(Method::PATCH, &loc, &[], b"some bytes".to_vec()).await;
    assert_eq!(r.staged_uploads().await, 1);
    let a = r.call(Method::DELETE, &loc, &[], vec![]).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(r.staged_uploads().await, 0);
    let a = r.call(Method::POST, "/v2/a/blobs/uploads/", &[], vec![]).await;
    let loc = a.header("location").to_string();
    r.call(Method::PATCH, &loc, &[], b"more bytes".to_vec()).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let reclaimed = berth::registry::uploads::expire_stale(&r.app).await.unwrap();
    assert_eq!(reclaimed, 1);
    assert_eq!(r.staged_uploads().await, 0);
    let a = r.call(Method::PATCH, &loc, &[], b"late".to_vec()).await;
    assert_eq!(a.code(), "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn bad_names_tags_and_methods() {
    let r = TestRegistry::embedded();
    let a = r.call(Method::GET, "/v2/Bad/tags/list", &[], vec![]).await;
    assert_eq!((a.status, a.code().as_str()), (StatusCode::BAD_REQUEST, "NAME_INVALID"));
    let tag = "t".repeat(129);
    let a = r.push_manifest("a", &tag, OCI_MANIFEST, b"{}").await;
    assert_eq!((a.status, a.code().as_str()), (StatusCode::BAD_REQUEST, "TAG_INVALID"));
    let a = r.call(Method::GET, "/v2/a/blobs/md5:d41d8cd98f00b204e9800998ecf8427e", &[], vec![]).await;
    assert_eq!((a.status, a.code().as_str()), (StatusCode::BAD_REQUEST, "DIGEST_INVALID"));
    let a = r.call(Method::POST, "/v2/a/manifests/x", &[], vec![]).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    let id = uuid_like();
    let a = r.call(Method::PATCH, &format!("/v2/a/blobs/uploads/{id}"), &[], b"x".to_vec()).await;
    assert_eq!((a.status, a.code().as_str()), (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"));
    let big = vec![b' '; 4 * 1024 * 1024 + 1];
    let a = r.push_manifest("a", "big", OCI_MANIFEST, &big).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
}

fn uuid_like() -> String {
    "6f1c2a4e-0b7d-4c1e-9a55-3f2d8e7b9c10".to_string()
}

#[tokio::test]
async fn a_function_serves_only_its_route() {
    let r = TestRegistry::embedded();
    let a = r.call_route(&berth::api::listing::BASE, Method::GET, "/v2/_catalog").await;
    assert_eq!((a.status, a.code().as_str()), (StatusCode::NOT_FOUND, "UNSUPPORTED"));
}

#[tokio::test]
async fn upload_gateway_locations_carry_a_token_that_is_required() {
    let r = TestRegistry::embedded().with_settings(|s| {
        s.upload_gateway_url = Some("https://upload.example.net/".into());
        s.upload_tokens =
            Some(berth::upload_token::UploadTokens::new(b"k".to_vec(), std::time::Duration::from_secs(600)));
    });
    let a = r.call(Method::POST, "/v2/team/app/blobs/uploads/", &[], vec![]).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let loc = a.header("location").to_string();
    assert!(loc.starts_with("https://upload.example.net/v2/team/app/blobs/uploads/"), "{loc}");
    let (path, query) = loc.trim_start_matches("https://upload.example.net").split_once('?').unwrap();
    assert!(query.starts_with("_state="));
    // without the token, or with another upload's token, the session is not reachable
    let a = r.call(Method::PATCH, path, &[], b"abc".to_vec()).await;
    assert_eq!((a.status, a.code().as_str()), (StatusCode::FORBIDDEN, "DENIED"));
    let b = r.call(Method::POST, "/v2/team/app/blobs/uploads/", &[], vec![]).await;
    let other_query = b.header("location").split_once('?').unwrap().1.to_string();
    let a = r.call(Method::PATCH, &format!("{path}?{other_query}"), &[], b"abc".to_vec()).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = r.call(Method::PATCH, &format!("{path}?{query}"), &[], b"abc".to_vec()).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert!(a.header("location").contains("?_state="));
    let digest = Digest::sha256_of(b"abc");
    let a = r.call(Method::PUT, &format!("{path}?{query}&digest={digest}"), &[], vec![]).await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = r.call(Method::GET, &format!("/v2/team/app/blobs/{digest}"), &[], vec![]).await;
    assert_eq!(a.body, b"abc");
}

/// Status, the headers a client acts on, and the JSON body of an error answer, with what differs
/// per run (session ids) normalised.
fn error_snapshot(a: &Answer) -> serde_json::Value {
    let mut headers = serde_json::Map::new();
    for name in ["content-type", "www-authenticate", "range", "content-range"] {
        if let Some(value) = a.headers.get(name) {
            headers.insert(name.into(), without_uuids(value.to_str().unwrap()).into());
        }
    }
    let body: serde_json::Value = serde_json::from_str(&without_uuids(&a.text())).unwrap_or_else(|e| {
        panic!("an error answer carries a JSON body ({e}): {}", a.text());
    });
    json!({ "status": a.status.as_u16(), "headers": headers, "body": body })
}

#[tokio::test]
async fn every_distinct_error_answer_matches_its_snapshot() {
    let r = TestRegistry::embedded().with_clock(1_800_000_000);
    let image = r.push_image("app", "v1").await;
    let viewer = r.user("viewer", berth::identity::Role::ServiceViewer, None).await;
    let never = Digest::sha256_of(b"never pushed");
    let mut seen = std::collections::BTreeMap::new();
    let mut record = |name: &str, a: Answer| {
        assert!(a.status.is_client_error(), "{name}: {} {}", a.status, a.text());
        assert!(seen.insert(name.to_string(), error_snapshot(&a)).is_none(), "{name} twice");
    };

    // the registry API
    record("name-unknown", r.call(Method::GET, "/v2/nope/tags/list", &[], vec![]).await);
    record("name-invalid", r.call(Method::GET, "/v2/Bad/tags/list", &[], vec![]).await);
    record("manifest-unknown", r.call(Method::GET, "/v2/app/manifests/missing", &[], vec![]).await);
    record("manifest-invalid", r.push_manifest("app", "v2", OCI_MANIFEST, b"{ not json").await);
    let config = r.push_blob("app", b"{}").await;
    let dangling = image_manifest((&config, 2), &[(&never, 12)], None);
    record("manifest-blob-unknown", r.push_manifest("app", "v2", OCI_MANIFEST, &dangling).await);
    record("manifest-too-large", r.push_manifest("app", "big", OCI_MANIFEST, &vec![b' '; 4 * 1024 * 1024 + 1]).await);
    record("tag-invalid", r.push_manifest("app", &"t".repeat(129), OCI_MANIFEST, b"{}").await);
    record("manifest-method", r.call(Method::POST, "/v2/app/manifests/v1", &[], vec![]).await);
    record("blob-unknown", r.call(Method::GET, &format!("/v2/app/blobs/{never}"), &[], vec![]).await);
    record(
        "digest-malformed",
        r.call(Method::GET, "/v2/app/blobs/md5:d41d8cd98f00b204e9800998ecf8427e", &[], vec![]).await,
    );
    let uri = format!("/v2/app/blobs/uploads/?digest={never}");
    record("digest-mismatch", r.call(Method::POST, &uri, &[], b"actual bytes".to_vec()).await);
    let layer = Digest::sha256_of(b"layer of app:v1");
    let uri = format!("/v2/app/blobs/{layer}");
    record("range-not-satisfiable", r.call(Method::GET, &uri, &[("range", "bytes=1000-")], vec![]).await);
    let unknown_session = "/v2/app/blobs/uploads/6f1c2a4e-0b7d-4c1e-9a55-3f2d8e7b9c10";
    record("blob-upload-unknown", r.call(Method::PATCH, unknown_session, &[], b"x".to_vec()).await);
    let session = r.call(Method::POST, "/v2/app/blobs/uploads/", &[], vec![]).await.header("location").to_string();
    record("chunk-out-of-order", r.call(Method::PATCH, &session, &[("content-range", "10-19")], vec![7; 10]).await);
    record("chunk-size-mismatch", r.call(Method::PATCH, &session, &[("content-range", "0-9")], vec![7; 20]).await);
    let a = r.call(Method::DELETE, &session, &[], vec![]).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);

    // who may do what
    record("unauthorized-anonymous", r.call_anonymous(Method::GET, "/v2/").await);
    let wrong = (r.admin().0, "not the secret".to_string());
    record("unauthorized-wrong-secret", r.call_as(&wrong, Method::GET, "/v2/", "").await);
    record("denied", r.call_as(&viewer, Method::POST, "/v2/app/blobs/uploads/", "").await);
    let a = r.call_json(Method::POST, "/api/v1/registries/app/protection/rules", r#"{"image":"**","tag":"v*"}"#).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let other = r.upload_image("app", b"{}", &[b"another layer"], None).await;
    record("protected", r.push_manifest("app", "v1", OCI_MANIFEST, &other).await);
    record("another-function", r.call_route(&berth::api::listing::BASE, Method::GET, "/v2/_catalog").await);

    // the management API
    record("api-invalid-request", r.call_json(Method::POST, "/api/v1/registries", "not json").await);
    record("api-not-found", r.call_json(Method::GET, "/api/v1/registries/nope", "").await);
    record("api-no-route", r.call_json(Method::GET, "/api/v1/nothing", "").await);
    record("api-already-exists", r.call_json(Method::POST, "/api/v1/registries", r#"{"name":"team"}"#).await);
    record("api-conflict", r.call_json(Method::DELETE, "/api/v1/users/admin", "").await);
    record("api-method", r.call_json(Method::PUT, "/api/v1/registries", "{}").await);
    let uri = format!("/api/v1/images/app/artifacts/{image}");
    record("api-protected", r.call_json(Method::DELETE, &uri, "").await);

    assert_snapshots("errors", &seen);
    r.work().await; // the usage refresh of the push
}
