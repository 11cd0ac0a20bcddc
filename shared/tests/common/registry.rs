//! The in-process test registry: an embedded store, requests through `api::handle` (what
//! `berth serve` and the Lambda functions call), an administrator, push helpers, a settable clock
//! and the job worker, so each test file says only what it checks.
#![allow(dead_code, clippy::expect_used)]

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use base64::Engine;
use berth::api;
use berth::app::{App, Settings};
use berth::body::{empty_stream, once_stream};
use berth::identity::{key, user, Role};
use berth::metadata::UnixTime;
use berth::oci::Digest;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};

use super::{prepare, TestClock, ADMIN_KEY, ADMIN_SECRET};

/// An access key id and its secret.
pub type Creds = (String, String);

/// A registry on a fresh embedded store in a temporary directory.
pub struct TestRegistry {
    /// the application every request goes through
    pub app: App,
    /// the clock, when the test set one ([`TestRegistry::with_clock`])
    pub clock: Option<Arc<TestClock>>,
    /// the data directory (removed when the registry is dropped)
    pub dir: tempfile::TempDir,
    prepared: tokio::sync::OnceCell<()>,
}

/// One answer: status, headers and body bytes.
#[derive(Debug)]
pub struct Answer {
    /// the status
    pub status: StatusCode,
    /// the headers
    pub headers: http::HeaderMap,
    /// the body
    pub body: Vec<u8>,
}

impl Answer {
    /// A header's value, or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    /// The first OCI error's code, or "".
    pub fn code(&self) -> String {
        self.json()["errors"][0]["code"].as_str().unwrap_or("").to_string()
    }
    /// The first OCI error's detail, or "".
    pub fn detail(&self) -> String {
        self.json()["errors"][0]["detail"].as_str().unwrap_or("").to_string()
    }
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

impl TestRegistry {
    /// With default settings and the wall clock.
    pub fn embedded() -> TestRegistry {
        TestRegistry::embedded_with(Settings::default())
    }

    /// With `settings` and the wall clock.
    pub fn embedded_with(settings: Settings) -> TestRegistry {
        let dir = tempfile::tempdir().unwrap();
        let app = App::embedded(dir.path(), settings).unwrap();
        TestRegistry { app, clock: None, dir, prepared: tokio::sync::OnceCell::new() }
    }

    /// The same registry on a clock standing at `start` that only [`TestRegistry::advance`] moves.
    pub fn with_clock(mut self, start: UnixTime) -> TestRegistry {
        let clock = Arc::new(TestClock(AtomicI64::new(start)));
        self.app.clock = clock.clone();
        self.clock = Some(clock);
        self
    }

    /// Moves the test clock forward.
    pub fn advance(&self, secs: i64) {
        self.clock.as_ref().expect("advance needs with_clock").0.fetch_add(secs, Ordering::SeqCst);
    }

    /// The administrator's credentials (created, with the test registries, before the first call).
    pub fn admin(&self) -> Creds {
        (ADMIN_KEY.to_string(), ADMIN_SECRET.to_string())
    }

    /// Creates a user with `role` over `registries` (all when `None`) and one access key.
    pub async fn user(&self, name: &str, role: Role, registries: Option<Vec<&str>>) -> Creds {
        prepare(&self.app, &self.prepared).await;
        let regs = registries.map(|l| l.into_iter().map(String::from).collect());
        user::create(self.app.meta.as_ref(), name, role, regs, "test", 0).await.unwrap();
        let (k, secret) = key::create(self.app.meta.as_ref(), name, None, 0).await.unwrap();
        (k.id, secret)
    }

    /// A request as the administrator, unless `headers` carry their own `authorization`.
    pub async fn call(&self, method: Method, uri: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
        prepare(&self.app, &self.prepared).await;
        let mut builder = http::Request::builder().method(method).uri(uri).header("host", "127.0.0.1:5000");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("authorization")) {
            builder = builder.header("authorization", basic(&self.admin()));
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let stream = if body.is_empty() { empty_stream() } else { once_stream(body) };
        let response = api::handle(&self.app, api::AllRoutes, builder.body(stream).unwrap()).await;
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes().to_vec();
        assert_eq!(parts.headers["docker-distribution-api-version"], "registry/2.0");
        Answer { status: parts.status, headers: parts.headers, body: bytes }
    }

    /// A JSON request (or none, when `body` is empty) with `creds`.
    pub async fn call_as(&self, creds: &Creds, method: Method, uri: &str, body: &str) -> Answer {
        let auth = basic(creds);
        let mut headers = vec![("authorization", auth.as_str())];
        if !body.is_empty() {
            headers.push(("content-type", "application/json"));
        }
        self.call(method, uri, &headers, body.as_bytes().to_vec()).await
    }

    /// A JSON request (or none, when `body` is empty) as the administrator.
    pub async fn call_json(&self, method: Method, uri: &str, body: &str) -> Answer {
        self.call_as(&self.admin(), method, uri, body).await
    }

    /// Uploads `data` whole into `repo`; its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let digest = Digest::sha256_of(data);
        let uri = format!("/v2/{repo}/blobs/uploads/?digest={digest}");
        let a = self.call(Method::POST, &uri, &[], data.to_vec()).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
        digest
    }

    /// Puts a manifest of `media_type` under `reference`.
    pub async fn push_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> Answer {
        let uri = format!("/v2/{repo}/manifests/{reference}");
        self.call(Method::PUT, &uri, &[("content-type", media_type)], body.to_vec()).await
    }

    /// Pushes a one-layer image whose bytes depend on `repo` and `tag`, tagged `tag`; its digest.
    pub async fn push_image(&self, repo: &str, tag: &str) -> Digest {
        let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":\"{repo}:{tag}\"}}").into_bytes();
        let layer = format!("layer of {repo}:{tag}").into_bytes();
        self.push_blob(repo, &config).await;
        self.push_blob(repo, &layer).await;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::sha256_of(&config).to_string(), "size": config.len() },
            "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": Digest::sha256_of(&layer).to_string(), "size": layer.len() }]
        });
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let a = self.push_manifest(repo, tag, "application/vnd.oci.image.manifest.v1+json", &bytes).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
        Digest::sha256_of(&bytes)
    }

    /// Runs every queued job (and the jobs they enqueue) to the end.
    pub async fn work(&self) {
        for _ in 0..20 {
            if berth::jobs::work_once(&self.app, 10).await.unwrap() == 0 {
                return;
            }
        }
        panic!("the job queue did not drain");
    }
}

/// `Authorization: Basic` of `creds`.
pub fn basic((key, secret): &Creds) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}")))
}
