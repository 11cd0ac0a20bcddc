//! The in-process test registry: a fresh store (embedded, or S3/DynamoDB/SQS on moto), requests
//! through `api::handle` (what `berth serve` and the Lambda functions call), an administrator,
//! push helpers, a settable clock and the job worker, so each test file says only what it checks.
//! A registry dropped with jobs nobody ran or discarded fails its test.
#![allow(dead_code, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use berth::api::{self, Endpoint, Routes};
use berth::app::{App, Clock, Settings, SystemClock};
use berth::body::{empty_stream, once_stream};
use berth::identity::{key, user, Role};
use berth::metadata::UnixTime;
use berth::oci::Digest;
use berth::queue::{Delivery, Job, JobQueue, QueueError};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};

use super::{prepare, testing, ADMIN_KEY, ADMIN_SECRET};

/// An access key id and its secret.
pub type Creds = (String, String);

/// The media type of an OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The media type of an OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A registry on a fresh store, with its own clock and a ledger of its jobs.
pub struct TestRegistry {
    /// the application every request goes through
    pub app: App,
    clock: Arc<TestClock>,
    jobs: Arc<JobLedger>,
    /// the embedded store's data directory (removed when the registry is dropped)
    dir: Option<tempfile::TempDir>,
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

/// Runs the async test function `$name(registry: TestRegistry)` as two tests, `$name::embedded`
/// and `$name::aws`, one per backend (optionally under another test attribute).
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident) => {
        $crate::on_both_backends!(
            #[tokio::test]
            $name
        );
    };
    (#[$test:meta] $name:ident) => {
        mod $name {
            #[$test]
            async fn embedded() {
                super::$name($crate::common::registry::TestRegistry::embedded()).await;
            }
            #[$test]
            async fn aws() {
                super::$name($crate::common::registry::TestRegistry::aws().await).await;
            }
        }
    };
}

impl TestRegistry {
    /// The embedded backend (files and SQLite in a temporary directory), on the wall clock.
    pub fn embedded() -> TestRegistry {
        let dir = tempfile::tempdir().unwrap();
        let app = App::embedded(dir.path(), TestRegistry::settings()).unwrap();
        TestRegistry::around(app, Some(dir))
    }

    /// The AWS backend: a fresh bucket, table and queue on the test moto server, on the wall clock.
    pub async fn aws() -> TestRegistry {
        let sdk = testing::aws_config().await;
        let names = berth::aws::AwsSettings {
            bucket: testing::unique_name("berth-test"),
            table: testing::unique_name("berth-test"),
            queue_url: None,
            queue_name: testing::unique_name("berth-test"),
            force_path_style: true,
        };
        let names = berth::aws::create_resources(&sdk, &names).await.unwrap();
        let app = berth::aws::app(&sdk, &names, TestRegistry::settings()).unwrap();
        TestRegistry::around(app, None)
    }

    /// The settings registries start with: the defaults, with usage refreshes due at once (so
    /// [`TestRegistry::work`] runs them instead of leaving them queued).
    pub fn settings() -> Settings {
        Settings { usage_refresh_delay: Duration::ZERO, ..Settings::default() }
    }

    fn around(mut app: App, dir: Option<tempfile::TempDir>) -> TestRegistry {
        let clock = Arc::new(TestClock { pinned: AtomicBool::new(false), at: AtomicI64::new(0) });
        app.clock = clock.clone();
        let jobs = Arc::new(JobLedger { inner: app.queue.clone(), sent: Mutex::default(), pending: Mutex::default() });
        app.queue = jobs.clone();
        TestRegistry { app, clock, jobs, dir, prepared: tokio::sync::OnceCell::new() }
    }

    /// The same registry with its settings changed by `change`.
    pub fn with_settings(mut self, change: impl FnOnce(&mut Settings)) -> TestRegistry {
        change(&mut self.app.settings);
        self
    }

    // --- the clock ------------------------------------------------------------------------------

    /// The same registry on a clock standing at `start` that only [`TestRegistry::advance`] and
    /// [`TestRegistry::set_time`] move.
    pub fn with_clock(self, start: UnixTime) -> TestRegistry {
        self.clock.at.store(start, Ordering::SeqCst);
        self.clock.pinned.store(true, Ordering::SeqCst);
        self
    }

    /// Moves the clock forward by `secs` (a clock that follows the wall clock runs that far ahead).
    pub fn advance(&self, secs: i64) {
        self.clock.at.fetch_add(secs, Ordering::SeqCst);
    }

    /// Sets the clock of [`TestRegistry::with_clock`] to `t`.
    pub fn set_time(&self, t: UnixTime) {
        assert!(self.clock.pinned.load(Ordering::SeqCst), "set_time needs with_clock");
        self.clock.at.store(t, Ordering::SeqCst);
    }

    /// The registry's time now.
    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    // --- users and requests ---------------------------------------------------------------------

    /// Creates the administrator and the test registries ([`super::REGISTRIES`]), once; every
    /// request does this first.
    pub async fn ready(&self) {
        prepare(&self.app, &self.prepared).await;
    }

    /// The administrator's credentials.
    pub fn admin(&self) -> Creds {
        (ADMIN_KEY.to_string(), ADMIN_SECRET.to_string())
    }

    /// Creates a user with `role` over `registries` (all when `None`) and one access key.
    pub async fn user(&self, name: &str, role: Role, registries: Option<Vec<&str>>) -> Creds {
        self.ready().await;
        let regs = registries.map(|l| l.into_iter().map(String::from).collect());
        user::create(self.app.meta.as_ref(), name, role, regs, "test", 0).await.unwrap();
        let (k, secret) = key::create(self.app.meta.as_ref(), name, None, 0).await.unwrap();
        (k.id, secret)
    }

    /// A request as the administrator, unless `headers` carry their own `authorization`.
    pub async fn call(&self, method: Method, uri: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
        let admin = basic(&self.admin());
        let mut all = headers.to_vec();
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("authorization")) {
            all.push(("authorization", admin.as_str()));
        }
        self.send(api::AllRoutes, method, uri, &all, body).await
    }

    /// A request without credentials.
    pub async fn call_anonymous(&self, method: Method, uri: &str) -> Answer {
        self.send(api::AllRoutes, method, uri, &[], vec![]).await
    }

    /// A request as the administrator to a process that serves only `endpoint` (a Lambda function).
    pub async fn call_route(&self, endpoint: &'static Endpoint, method: Method, uri: &str) -> Answer {
        let admin = basic(&self.admin());
        self.send(endpoint, method, uri, &[("authorization", &admin)], vec![]).await
    }

    /// A JSON request (or none, when `body` is empty) with `creds`.
    pub async fn call_as(&self, creds: &Creds, method: Method, uri: &str, body: &str) -> Answer {
        self.call_authorized(&basic(creds), method, uri, body).await
    }

    /// A JSON request (or none, when `body` is empty) with a Bearer `token`.
    pub async fn call_bearer(&self, token: &str, method: Method, uri: &str, body: &str) -> Answer {
        self.call_authorized(&format!("Bearer {token}"), method, uri, body).await
    }

    /// A JSON request (or none, when `body` is empty) as the administrator.
    pub async fn call_json(&self, method: Method, uri: &str, body: &str) -> Answer {
        self.call_as(&self.admin(), method, uri, body).await
    }

    /// A `GET` that must answer 200; its JSON.
    pub async fn get_json(&self, uri: &str) -> Value {
        let a = self.call(Method::GET, uri, &[], vec![]).await;
        assert_eq!(a.status, StatusCode::OK, "GET {uri}: {}", a.text());
        a.json()
    }

    /// A Bearer token for `scope` (space-separated scopes), issued to `creds` by the token endpoint.
    pub async fn token(&self, creds: &Creds, scope: &str) -> String {
        let scope = scope.replace(':', "%3A").replace('/', "%2F").replace(' ', "%20");
        let a = self.call_as(creds, Method::GET, &format!("/auth/token?service=berth&scope={scope}"), "").await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        a.json()["token"].as_str().unwrap().to_string()
    }

    async fn call_authorized(&self, authorization: &str, method: Method, uri: &str, body: &str) -> Answer {
        let mut headers = vec![("authorization", authorization)];
        if !body.is_empty() {
            headers.push(("content-type", "application/json"));
        }
        self.send(api::AllRoutes, method, uri, &headers, body.as_bytes().to_vec()).await
    }

    /// The one place a request reaches `api::handle`, served by `routes` (every route, or one
    /// endpoint's).
    async fn send(
        &self,
        routes: impl Routes,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Answer {
        self.ready().await;
        let mut builder = http::Request::builder().method(method).uri(uri).header("host", "127.0.0.1:5000");
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let stream = if body.is_empty() { empty_stream() } else { once_stream(body) };
        let request = builder.body(stream).unwrap();
        let response = api::handle(&self.app, routes, request).await;
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes().to_vec();
        assert_eq!(parts.headers["docker-distribution-api-version"], "registry/2.0");
        Answer { status: parts.status, headers: parts.headers, body: bytes }
    }

    // --- content --------------------------------------------------------------------------------

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

    /// Uploads `config` and `layers` into `repo`; the image manifest naming them (about
    /// `subject` when given), not yet pushed.
    pub async fn upload_image(&self, repo: &str, config: &[u8], layers: &[&[u8]], subject: Option<&Digest>) -> Vec<u8> {
        let config_digest = self.push_blob(repo, config).await;
        let mut named = Vec::new();
        for layer in layers {
            named.push((self.push_blob(repo, layer).await, layer.len()));
        }
        let named: Vec<(&Digest, usize)> = named.iter().map(|(d, n)| (d, *n)).collect();
        image_manifest((&config_digest, config.len()), &named, subject)
    }

    /// Uploads `config` and `layers` into `repo` and puts their manifest under `tag` (by digest
    /// when `None`); the manifest's bytes and digest.
    pub async fn push_image_of(
        &self,
        repo: &str,
        tag: Option<&str>,
        config: &[u8],
        layers: &[&[u8]],
    ) -> (Vec<u8>, Digest) {
        let manifest = self.upload_image(repo, config, layers, None).await;
        let digest = Digest::sha256_of(&manifest);
        let reference = tag.map_or_else(|| digest.to_string(), str::to_string);
        let a = self.push_manifest(repo, &reference, OCI_MANIFEST, &manifest).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
        assert_eq!(a.header("docker-content-digest"), digest.to_string());
        (manifest, digest)
    }

    /// Pushes a one-layer linux/amd64 image whose bytes depend on `repo` and `tag`, tagged `tag`;
    /// its digest.
    pub async fn push_image(&self, repo: &str, tag: &str) -> Digest {
        let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":\"{repo}:{tag}\"}}");
        let layer = format!("layer of {repo}:{tag}");
        self.push_image_of(repo, Some(tag), config.as_bytes(), &[layer.as_bytes()]).await.1
    }

    /// Points `tag` of `repo` at `digest` through the management API.
    pub async fn tag(&self, repo: &str, tag: &str, digest: &Digest) {
        let body = json!({ "digest": digest.to_string() }).to_string();
        let a = self.call_json(Method::PUT, &format!("/api/v1/images/{repo}/tags/{tag}"), &body).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    }

    /// Whether manifest `digest` is in `repo`.
    pub async fn exists(&self, repo: &str, digest: &Digest) -> bool {
        self.call(Method::HEAD, &format!("/v2/{repo}/manifests/{digest}"), &[], vec![]).await.status == StatusCode::OK
    }

    /// The tags of `repo` (none when the repository is unknown).
    pub async fn tags(&self, repo: &str) -> Vec<String> {
        let a = self.call(Method::GET, &format!("/v2/{repo}/tags/list"), &[], vec![]).await;
        if a.status == StatusCode::NOT_FOUND {
            return vec![];
        }
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        a.json()["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect()
    }

    /// Upload sessions with staged bytes.
    pub async fn staged_uploads(&self) -> usize {
        match &self.dir {
            // every entry of the staging directory, not only those named like a session
            Some(dir) => std::fs::read_dir(dir.path().join("uploads")).map_or(0, Iterator::count),
            None => self.app.blobs.list_uploads().await.unwrap().len(),
        }
    }

    // --- jobs -----------------------------------------------------------------------------------

    /// Runs every due job (and the jobs they enqueue) until none is due; how many ran.
    pub async fn work(&self) -> usize {
        let mut ran = 0;
        for _ in 0..10_000 {
            match berth::jobs::work_once(&self.app, 10).await.unwrap() {
                0 => return ran,
                n => ran += n,
            }
        }
        panic!("the job queue did not drain");
    }

    /// Every job enqueued so far, with its delay, in order.
    pub fn sent_jobs(&self) -> Vec<(Job, Duration)> {
        self.jobs.sent.lock().unwrap().clone()
    }

    /// Removes the jobs nobody ran, without running them: the due ones leave the queue, and the
    /// registry no longer counts any of them as left over. What was pending, in order.
    pub async fn discard_pending_jobs(&self) -> Vec<Job> {
        let pending = self.jobs.pending.lock().unwrap().clone();
        loop {
            let deliveries = self.app.queue.receive(10, berth::jobs::LEASE).await.unwrap();
            if deliveries.is_empty() {
                break;
            }
            for d in &deliveries {
                self.app.queue.ack(d).await.unwrap();
            }
        }
        self.jobs.pending.lock().unwrap().clear();
        pending
    }
}

impl Drop for TestRegistry {
    /// Fails the test when jobs were enqueued that nobody ran or discarded.
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let pending = self.jobs.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let kinds: Vec<&str> = pending.iter().map(|j| j.kind.as_str()).collect();
        assert!(
            kinds.is_empty(),
            "{} job(s) left unprocessed: {kinds:?}; run them (`work`) or discard them (`discard_pending_jobs`)",
            kinds.len()
        );
    }
}

/// An OCI image manifest naming `config` and `layers` (digest and size), about `subject` when given.
pub fn image_manifest(config: (&Digest, usize), layers: &[(&Digest, usize)], subject: Option<&Digest>) -> Vec<u8> {
    let layers: Vec<Value> = layers
        .iter()
        .map(|(d, n)| json!({ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d.to_string(), "size": n }))
        .collect();
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0.to_string(), "size": config.1 },
        "layers": layers,
    });
    if let Some(s) = subject {
        manifest["subject"] = json!({ "mediaType": OCI_MANIFEST, "digest": s.to_string(), "size": 1 });
    }
    serde_json::to_vec(&manifest).unwrap()
}

/// `Authorization: Basic` of `creds`.
pub fn basic((key, secret): &Creds) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}")))
}

/// The registry's clock: the wall clock moved by `at` seconds, or, once pinned, `at` itself.
struct TestClock {
    pinned: AtomicBool,
    at: AtomicI64,
}

impl Clock for TestClock {
    fn now(&self) -> UnixTime {
        let at = self.at.load(Ordering::SeqCst);
        if self.pinned.load(Ordering::SeqCst) {
            at
        } else {
            SystemClock.now() + at
        }
    }
}

/// The registry's job queue: the backend's, recording what is enqueued and what is still pending
/// (enqueued, not yet acknowledged as done).
struct JobLedger {
    inner: Arc<dyn JobQueue>,
    sent: Mutex<Vec<(Job, Duration)>>,
    pending: Mutex<Vec<Job>>,
}

#[async_trait::async_trait]
impl JobQueue for JobLedger {
    async fn enqueue(&self, job: &Job, delay: Duration) -> Result<(), QueueError> {
        self.inner.enqueue(job, delay).await?;
        self.sent.lock().unwrap().push((job.clone(), delay));
        self.pending.lock().unwrap().push(job.clone());
        Ok(())
    }
    async fn receive(&self, max: usize, lease: Duration) -> Result<Vec<Delivery>, QueueError> {
        self.inner.receive(max, lease).await
    }
    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.inner.ack(delivery).await?;
        let mut pending = self.pending.lock().unwrap();
        if let Some(i) = pending.iter().position(|j| *j == delivery.job) {
            pending.remove(i);
        }
        Ok(())
    }
    async fn retry(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError> {
        self.inner.retry(delivery, delay).await
    }
}
