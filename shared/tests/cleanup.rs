//! Image cleanup and protection, in process on the embedded backend with a test clock: the exact
//! semantics of the retain rules (union across rules and images, a kept tag keeps its artifact,
//! protection beats cleanup, disabled rules, test runs, each keep policy at its boundary), what
//! goes with a deleted artifact (referrers, index children), a run interrupted at arbitrary points
//! and resumed, cleanup cycles firing once per due time, and every protected operation refused
//! through the registry API.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
/// The moto server and SDK configuration the library's own adapter tests use.
#[path = "../src/testing.rs"]
mod testing;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth::api;
use berth::app::{App, Clock, Settings};
use berth::body::{empty_stream, once_stream};
use berth::metadata::UnixTime;
use berth::oci::Digest;
use berth::policy::cleanup::{self, Action, CleanupRun, Keep, NewRule, RunStatus, TagMode, Trigger};
use berth::policy::protection;
use common::{admin_basic, prepare, TestClock};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DAY: i64 = 86_400;
/// 2027-01-15T00:00:00Z
const T0: UnixTime = 1_799_971_200;

struct Env {
    app: App,
    clock: Arc<TestClock>,
    prepared: tokio::sync::OnceCell<()>,
    _dir: Option<tempfile::TempDir>,
}

struct Answer {
    status: StatusCode,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn code(&self) -> String {
        self.json()["errors"][0]["code"].as_str().unwrap_or_default().to_string()
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

fn rule(image: &str, tag: &str, mode: TagMode, untagged: bool, keep: &str) -> NewRule {
    NewRule { image: image.into(), tag: tag.into(), tag_mode: mode, untagged, keep: keep.parse::<Keep>().unwrap() }
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let mut app = App::embedded(dir.path(), Settings::default()).unwrap();
        let clock = Arc::new(TestClock(AtomicI64::new(T0)));
        app.clock = clock.clone();
        Env { app, clock, prepared: tokio::sync::OnceCell::new(), _dir: Some(dir) }
    }

    /// The AWS backend: S3, DynamoDB and SQS on the test moto server (jobs go through SQS).
    async fn aws() -> Env {
        let sdk = testing::aws_config().await;
        let names = berth::aws::AwsSettings {
            bucket: testing::unique_name("berth-cleanup"),
            table: testing::unique_name("berth-cleanup"),
            queue_url: None,
            queue_name: testing::unique_name("berth-cleanup"),
            force_path_style: true,
        };
        let names = berth::aws::create_resources(&sdk, &names).await.unwrap();
        let mut app = berth::aws::app(&sdk, &names, Settings::default()).unwrap();
        let clock = Arc::new(TestClock(AtomicI64::new(T0)));
        app.clock = clock.clone();
        Env { app, clock, prepared: tokio::sync::OnceCell::new(), _dir: None }
    }

    fn now(&self) -> UnixTime {
        self.clock.now()
    }

    fn set_time(&self, t: UnixTime) {
        self.clock.0.store(t, Ordering::SeqCst);
    }

    fn tick(&self, secs: i64) {
        self.clock.0.fetch_add(secs, Ordering::SeqCst);
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

    async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let digest = Digest::sha256_of(data);
        let a =
            self.call(Method::POST, &format!("/v2/{repo}/blobs/uploads/?digest={digest}"), None, data.to_vec()).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
        digest
    }

    async fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> Answer {
        self.call(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"), Some(media_type), body.to_vec()).await
    }

    /// An image manifest with one unique layer (`label`), optionally about `subject`.
    async fn image_manifest(&self, repo: &str, label: &str, subject: Option<&Digest>) -> Vec<u8> {
        let config = self.push_blob(repo, b"{}").await;
        let layer = self.push_blob(repo, label.as_bytes()).await;
        let subject = subject
            .map(|s| format!(r#","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{s}","size":1}}"#))
            .unwrap_or_default();
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":{}}}]{subject}}}"#,
            label.len()
        )
        .into_bytes()
    }

    /// Pushes an artifact under `reference` (a tag, or `@` for by digest) one second after the last.
    async fn push(&self, repo: &str, reference: &str, label: &str) -> Digest {
        self.tick(1);
        let body = self.image_manifest(repo, label, None).await;
        let digest = Digest::sha256_of(&body);
        let reference = if reference == "@" { digest.to_string() } else { reference.to_string() };
        let a = self.put_manifest(repo, &reference, OCI_MANIFEST, &body).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
        digest
    }

    async fn tag(&self, repo: &str, tag: &str, digest: &Digest) {
        let a = self
            .call(Method::PUT, &format!("/api/v1/images/{repo}/tags/{tag}"), Some("application/json"), {
                json!({ "digest": digest.to_string() }).to_string().into_bytes()
            })
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    }

    async fn exists(&self, repo: &str, digest: &Digest) -> bool {
        let a = self.call(Method::HEAD, &format!("/v2/{repo}/manifests/{digest}"), None, vec![]).await;
        a.status == StatusCode::OK
    }

    async fn tags(&self, repo: &str) -> Vec<String> {
        let a = self.call(Method::GET, &format!("/v2/{repo}/tags/list"), None, vec![]).await;
        if a.status == StatusCode::NOT_FOUND {
            return vec![];
        }
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        a.json()["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect()
    }

    async fn add_rule(&self, registry: &str, r: NewRule) -> String {
        prepare(&self.app, &self.prepared).await;
        cleanup::add_rule(self.app.meta.as_ref(), registry, &r, self.now()).await.unwrap().id
    }

    async fn protect(&self, registry: &str, image: &str, tag: &str) -> String {
        prepare(&self.app, &self.prepared).await;
        protection::add(self.app.meta.as_ref(), registry, image, tag, self.now()).await.unwrap().id
    }

    /// Starts a run, works the queue until it ends, and returns it with its decisions.
    async fn run(&self, registry: &str, dry_run: bool) -> (CleanupRun, Vec<cleanup::Decision>) {
        let started = cleanup::start(&self.app, registry, dry_run).await.unwrap();
        assert_eq!(started.status, RunStatus::Queued);
        self.work().await;
        let run = cleanup::run(self.app.meta.as_ref(), registry, &started.id).await.unwrap();
        assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
        let (decisions, next) = cleanup::decisions(self.app.meta.as_ref(), registry, &run.id, 0, 1000).await.unwrap();
        assert!(next.is_none());
        (run, decisions)
    }

    async fn work(&self) {
        while berth::jobs::work_once(&self.app, 10).await.unwrap() > 0 {}
    }
}

fn decision<'a>(decisions: &'a [cleanup::Decision], digest: &Digest) -> &'a cleanup::Decision {
    decisions.iter().find(|d| d.digest == digest.to_string()).unwrap_or_else(|| panic!("no decision for {digest}"))
}

#[tokio::test]
async fn union_of_two_rules_across_two_images_and_untouched_images() {
    union_of_two_rules_across_two_images_and_untouched_images_on(Env::new()).await;
}

#[tokio::test]
async fn aws_union_of_two_rules_across_two_images_and_untouched_images() {
    union_of_two_rules_across_two_images_and_untouched_images_on(Env::aws().await).await;
}

async fn union_of_two_rules_across_two_images_and_untouched_images_on(env: Env) {
    let a1 = env.push("team/a", "v1", "a1").await;
    let a2 = env.push("team/a", "x2", "a2").await;
    let a3 = env.push("team/a", "@", "a3").await; // untagged
    let a4 = env.push("team/a", "x4", "a4").await;
    let b1 = env.push("team/b", "x1", "b1").await;
    let b2 = env.push("team/b", "x2", "b2").await;
    env.tick(10);

    // rule 1: image a, every tag and untagged, keep the 2 latest pushed; b is not selected
    let c1 = env.add_rule("team", rule("a", "**", TagMode::Match, true, "latest-pushed:2")).await;
    let (run, decisions) = env.run("team", false).await;
    assert_eq!((run.total, run.retained, run.deleted, run.protected, run.images), (4, 2, 2, 0, 1));
    assert!(!env.exists("team/a", &a1).await && !env.exists("team/a", &a2).await);
    assert!(env.exists("team/a", &a3).await && env.exists("team/a", &a4).await);
    assert!(env.exists("team/b", &b1).await && env.exists("team/b", &b2).await, "b is untouched");
    assert_eq!(env.tags("team/a").await, ["x4"]);
    assert!(decision(&decisions, &a4).reason.contains(&format!("rule {c1}")), "{decisions:?}");
    assert_eq!(decision(&decisions, &a1).action, Action::Delete);
    assert!(decisions.iter().all(|d| d.image == "team/a"));

    // rule 2 (every image, tags v*, always) joins the union: nothing more goes in a; in b only
    // what neither rule keeps goes — and b is now selected, with no v* tag there, so b loses all
    let a5 = env.push("team/a", "v5", "a5").await;
    let a6 = env.push("team/a", "x6", "a6").await;
    let a7 = env.push("team/a", "x7", "a7").await;
    env.tick(10);
    env.add_rule("team", rule("**", "v*", TagMode::Match, false, "always")).await;
    let (run, decisions) = env.run("team", false).await;
    // a: a3, a4, a5(v5), a6, a7 → latest 2 pushed (a6, a7) ∪ v* (a5) kept; a3, a4 deleted
    assert!(env.exists("team/a", &a5).await && env.exists("team/a", &a6).await && env.exists("team/a", &a7).await);
    assert!(!env.exists("team/a", &a3).await && !env.exists("team/a", &a4).await);
    assert_eq!(decision(&decisions, &a5).action, Action::Retain);
    assert!(decision(&decisions, &a5).reason.contains("rule c2"), "{}", decision(&decisions, &a5).reason);
    // b: selected by rule 2 only, which keeps nothing there
    assert!(!env.exists("team/b", &b1).await && !env.exists("team/b", &b2).await);
    assert_eq!((run.total, run.retained, run.deleted), (7, 3, 4));
    assert_eq!(run.images, 2);
}

#[tokio::test]
async fn keeping_one_tag_keeps_the_artifact_and_all_its_tags() {
    let env = Env::new();
    let both = env.push("team/app", "dev-1", "one").await;
    env.tag("team/app", "prod-1", &both).await;
    let dev = env.push("team/app", "dev-2", "two").await;
    env.tick(5);
    env.add_rule("team", rule("**", "prod-*", TagMode::Match, false, "always")).await;
    let (run, decisions) = env.run("team", false).await;
    assert!(env.exists("team/app", &both).await);
    assert!(!env.exists("team/app", &dev).await);
    assert_eq!(env.tags("team/app").await, ["dev-1", "prod-1"]);
    assert_eq!(decision(&decisions, &dev).reason, "no rule selects its tags");
    assert_eq!((run.retained, run.deleted), (1, 1));
}

#[tokio::test]
async fn protection_beats_cleanup_and_history_says_so() {
    protection_beats_cleanup_and_history_says_so_on(Env::new()).await;
}

#[tokio::test]
async fn aws_protection_beats_cleanup_and_history_says_so() {
    protection_beats_cleanup_and_history_says_so_on(Env::aws().await).await;
}

async fn protection_beats_cleanup_and_history_says_so_on(env: Env) {
    let old = env.push("team/svc", "1.0", "old").await;
    let newer = env.push("team/svc", "2.0", "new").await;
    env.tick(5);
    let p = env.protect("team", "svc", "1.*").await;
    env.add_rule("team", rule("**", "**", TagMode::Match, true, "latest-pushed:0")).await;
    let (run, decisions) = env.run("team", false).await;
    assert!(env.exists("team/svc", &old).await, "the protected artifact stays");
    assert!(!env.exists("team/svc", &newer).await);
    let d = decision(&decisions, &old);
    assert_eq!(d.action, Action::Protected);
    assert!(d.reason.contains(&format!("protection rule {p}")), "{}", d.reason);
    assert_eq!((run.protected, run.deleted, run.retained), (1, 1, 0));
}

#[tokio::test]
async fn disabled_rules_do_nothing_and_test_runs_delete_nothing() {
    let env = Env::new();
    let one = env.push("team/web", "a", "1").await;
    let two = env.push("team/web", "b", "2").await;
    env.tick(5);
    let id = env.add_rule("team", rule("**", "**", TagMode::Match, true, "latest-pushed:1")).await;
    cleanup::set_enabled(env.app.meta.as_ref(), "team", &id, false).await.unwrap();
    let (run, decisions) = env.run("team", false).await;
    assert_eq!((run.total, run.deleted, run.images), (0, 0, 0));
    assert!(decisions.is_empty() && run.rules.is_empty());

    cleanup::set_enabled(env.app.meta.as_ref(), "team", &id, true).await.unwrap();
    let (run, decisions) = env.run("team", true).await;
    assert!(run.dry_run);
    assert_eq!(run.trigger, Trigger::Manual);
    assert_eq!((run.total, run.deleted, run.retained), (2, 1, 1), "a test run counts what it would delete");
    assert_eq!(decision(&decisions, &one).action, Action::Delete);
    assert!(!decision(&decisions, &one).done);
    assert!(env.exists("team/web", &one).await && env.exists("team/web", &two).await, "a test run deletes nothing");
    assert_eq!(env.tags("team/web").await, ["a", "b"]);
}

#[tokio::test]
async fn identical_rules_are_refused() {
    let env = Env::new();
    env.add_rule("team", rule("a/**", "v*", TagMode::Match, false, "latest-pushed:3")).await;
    let again = cleanup::add_rule(
        env.app.meta.as_ref(),
        "team",
        &rule("a/**", "v*", TagMode::Match, false, "latest-pushed:3"),
        0,
    )
    .await;
    assert!(matches!(again, Err(cleanup::CleanupError::Duplicate { ref rule, .. }) if rule == "c1"), "{again:?}");
    // a different policy is a different rule
    env.add_rule("team", rule("a/**", "v*", TagMode::Match, false, "latest-pushed:4")).await;
}

#[tokio::test]
async fn day_policies_at_their_boundary() {
    let env = Env::new();
    let edge = env.push("team/d", "edge", "edge").await; // pushed at T0+1
    let before = env.push("team/d", "before", "before").await; // T0+2
    env.set_time(T0 + 1 + 7 * DAY);
    // the same second as 7 days after `edge`: kept; `before` is a second younger: kept too
    env.add_rule("team", rule("**", "**", TagMode::Match, false, "pushed-within:7d")).await;
    let (run, _) = env.run("team", true).await;
    assert_eq!((run.retained, run.deleted), (2, 0));
    env.set_time(T0 + 2 + 7 * DAY);
    let (run, decisions) = env.run("team", true).await;
    assert_eq!((run.retained, run.deleted), (1, 1));
    assert_eq!(decision(&decisions, &edge).action, Action::Delete);
    assert_eq!(decision(&decisions, &before).action, Action::Retain);
}

#[tokio::test]
async fn pulled_within_counts_a_fresh_push_as_pulled_and_a_get_as_a_pull() {
    let env = Env::new();
    let pulled = env.push("team/p", "pulled", "p").await; // T0+1
    let never = env.push("team/p", "never", "n").await; // T0+2
                                                        // 20 days later, `pulled` is pulled (GET); HEAD does not count
    env.set_time(T0 + 20 * DAY);
    let a = env.call(Method::GET, "/v2/team/p/manifests/pulled", None, vec![]).await;
    assert_eq!(a.status, StatusCode::OK);
    let h = env.call(Method::HEAD, "/v2/team/p/manifests/never", None, vec![]).await;
    assert_eq!(h.status, StatusCode::OK);
    env.add_rule("team", rule("**", "**", TagMode::Match, false, "pulled-within:7d")).await;
    env.set_time(T0 + 27 * DAY);
    let (_, decisions) = env.run("team", true).await;
    assert_eq!(decision(&decisions, &pulled).action, Action::Retain, "pulled exactly 7 days ago");
    assert_eq!(decision(&decisions, &never).action, Action::Delete, "never pulled, pushed 27 days ago");
    // and a push of today counts as pulled today
    let fresh = env.push("team/p", "fresh", "f").await;
    env.tick(60);
    let (_, decisions) = env.run("team", true).await;
    assert_eq!(decision(&decisions, &fresh).action, Action::Retain);
}

#[tokio::test]
async fn referrers_and_index_children_go_with_their_parent() {
    referrers_and_index_children_go_with_their_parent_on(Env::new()).await;
}

#[tokio::test]
async fn aws_referrers_and_index_children_go_with_their_parent() {
    referrers_and_index_children_go_with_their_parent_on(Env::aws().await).await;
}

async fn referrers_and_index_children_go_with_their_parent_on(env: Env) {
    let repo = "team/multi";
    // two platform images, an index listing both, a signature of the index
    let amd = env.image_manifest(repo, "amd64", None).await;
    let arm = env.image_manifest(repo, "arm64", None).await;
    let (amd_d, arm_d) = (Digest::sha256_of(&amd), Digest::sha256_of(&arm));
    env.tick(1);
    for (d, body) in [(&amd_d, &amd), (&arm_d, &arm)] {
        assert_eq!(env.put_manifest(repo, &d.to_string(), OCI_MANIFEST, body).await.status, StatusCode::CREATED);
    }
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
        {{"mediaType":"{OCI_MANIFEST}","digest":"{amd_d}","size":{}}},
        {{"mediaType":"{OCI_MANIFEST}","digest":"{arm_d}","size":{}}}]}}"#,
        amd.len(),
        arm.len()
    )
    .into_bytes();
    let index_d = Digest::sha256_of(&index);
    assert_eq!(env.put_manifest(repo, "old", OCI_INDEX, &index).await.status, StatusCode::CREATED);
    let sig = env.image_manifest(repo, "signature", Some(&index_d)).await;
    let sig_d = Digest::sha256_of(&sig);
    assert_eq!(env.put_manifest(repo, &sig_d.to_string(), OCI_MANIFEST, &sig).await.status, StatusCode::CREATED);
    let keep = env.push(repo, "new", "newest").await;
    env.tick(5);

    env.add_rule("team", rule("**", "**", TagMode::Match, true, "latest-pushed:1")).await;
    let (run, decisions) = env.run("team", false).await;
    // candidates are the top-level artifacts only: the index and `new` (children and the
    // signature are not candidates)
    assert_eq!(run.total, 2, "{decisions:?}");
    assert_eq!(decision(&decisions, &index_d).action, Action::Delete);
    assert!(env.exists(repo, &keep).await);
    for gone in [&index_d, &amd_d, &arm_d, &sig_d] {
        assert!(!env.exists(repo, gone).await, "{gone} should have gone with its index");
    }
}

#[tokio::test]
async fn an_interrupted_run_resumes_with_nothing_deleted_twice() {
    let env = Env::new();
    let repo = "team/many";
    let n = 450; // three chunks of decisions
    let mut digests = vec![];
    for i in 0..n {
        digests.push(env.push(repo, &format!("t{i:04}"), &format!("artifact {i}")).await);
    }
    env.tick(5);
    env.add_rule("team", rule("**", "**", TagMode::Match, false, "latest-pushed:7")).await;
    let started = cleanup::start(&env.app, "team", false).await.unwrap();
    // "kill" the worker at ever later points: the job's future is dropped mid-way each time,
    // and the next delivery resumes from what was recorded
    let mut budget = Duration::from_micros(500);
    let mut interrupted = 0;
    loop {
        match tokio::time::timeout(budget, cleanup::execute(&env.app, "team", Some(&started.id), None)).await {
            Ok(result) => {
                if result.is_ok() {
                    break;
                }
            }
            Err(_) => interrupted += 1,
        }
        budget = budget.mul_f64(1.6);
        // let a dropped SQLite write that was already on the blocking pool land
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(interrupted >= 3, "the run was interrupted {interrupted} times only");
    let run = cleanup::run(env.app.meta.as_ref(), "team", &started.id).await.unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!((run.total, run.retained, run.deleted, run.failed), (450, 7, 443, 0), "{run:?}");
    let tags = env.tags(repo).await;
    assert_eq!(tags, (443..450).map(|i| format!("t{i:04}")).collect::<Vec<_>>());
    let (decisions, _) = cleanup::decisions(env.app.meta.as_ref(), "team", &run.id, 0, 100).await.unwrap();
    assert_eq!(decisions.len(), 450);
    assert_eq!(decisions.iter().filter(|d| d.action == Action::Delete && d.done).count(), 443);
    // the queued job (delivered later) finds the run finished and does nothing
    env.work().await;
    let again = cleanup::run(env.app.meta.as_ref(), "team", &started.id).await.unwrap();
    assert_eq!(again, run);
}

#[tokio::test]
async fn a_push_after_the_run_started_is_not_cleaned() {
    let env = Env::new();
    env.push("team/race", "old", "old").await;
    env.add_rule("team", rule("**", "**", TagMode::Match, true, "latest-pushed:0")).await;
    let started = cleanup::start(&env.app, "team", false).await.unwrap();
    // the worker starts this run at T, and an artifact pushed at T is in flight
    let fresh = env.push("team/race", "fresh", "fresh").await;
    env.work().await;
    let run = cleanup::run(env.app.meta.as_ref(), "team", &started.id).await.unwrap();
    assert!(env.exists("team/race", &fresh).await);
    assert_eq!((run.deleted, run.retained), (1, 1), "{run:?}");
}

#[tokio::test]
async fn cleanup_cycles_fire_once_per_due_time() {
    cleanup_cycles_fire_once_per_due_time_on(Env::new()).await;
}

#[tokio::test]
async fn aws_cleanup_cycles_fire_once_per_due_time() {
    cleanup_cycles_fire_once_per_due_time_on(Env::aws().await).await;
}

async fn cleanup_cycles_fire_once_per_due_time_on(env: Env) {
    let old = env.push("team/cyc", "old", "old").await;
    let newer = env.push("team/cyc", "new", "new").await;
    env.add_rule("team", rule("**", "**", TagMode::Match, false, "latest-pushed:1")).await;
    let view = cleanup::set_cycle(env.app.meta.as_ref(), "team", Some("0 3 * * *"), env.now()).await.unwrap();
    assert_eq!(view.cron.as_deref(), Some("0 3 * * *"));
    assert_eq!(view.next_run_at, Some(T0 + 3 * 3600));
    // not yet due
    assert_eq!(berth::schedule::fire_due(&env.app).await.unwrap(), 0);
    env.set_time(T0 + 3 * 3600 + 20);
    // two schedulers and an EventBridge tick delivered twice, all at once
    let event: aws_lambda_events::event::eventbridge::EventBridgeEvent = serde_json::from_value(json!({
        "version": "0", "id": "e1", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2027-01-15T03:00:20Z", "region": "us-east-1",
        "resources": [], "detail": {}
    }))
    .unwrap();
    let (a, b, c, d) = tokio::join!(
        berth::schedule::fire_due(&env.app),
        berth::schedule::fire_due(&env.app),
        berth::lambda::schedule_housekeeping(&env.app, &event),
        berth::lambda::schedule_housekeeping(&env.app, &event),
    );
    let (a, b, c, d) = (a.unwrap(), b.unwrap(), c.unwrap(), d.unwrap());
    assert!(a + b + c + d >= 1);
    env.work().await;
    let (runs, more) = cleanup::runs(env.app.meta.as_ref(), "team", None, 100).await.unwrap();
    assert!(!more);
    assert_eq!(runs.len(), 1, "one run per due time: {runs:?}");
    assert_eq!(runs[0].trigger, Trigger::Schedule);
    assert_eq!(runs[0].status, RunStatus::Succeeded);
    assert_eq!(runs[0].queued_at, T0 + 3 * 3600);
    assert!(!env.exists("team/cyc", &old).await && env.exists("team/cyc", &newer).await);
    // the next day fires again
    env.set_time(T0 + DAY + 3 * 3600 + 5);
    berth::schedule::fire_due(&env.app).await.unwrap();
    env.work().await;
    let (runs, _) = cleanup::runs(env.app.meta.as_ref(), "team", None, 100).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].queued_at, T0 + DAY + 3 * 3600, "newest first");
    // switched off: nothing more
    cleanup::set_cycle(env.app.meta.as_ref(), "team", None, env.now()).await.unwrap();
    env.set_time(T0 + 2 * DAY + 3 * 3600 + 5);
    berth::schedule::fire_due(&env.app).await.unwrap(); // upload expiry is still scheduled
    env.work().await;
    assert_eq!(cleanup::runs(env.app.meta.as_ref(), "team", None, 100).await.unwrap().0.len(), 2);
}

#[tokio::test]
async fn protected_tags_refuse_overwrite_move_and_delete_through_the_registry_api() {
    let env = Env::new();
    let repo = "team/prot";
    let v1 = env.push(repo, "v1", "one").await;
    let other = env.push(repo, "scratch", "two").await;
    env.protect("team", "prot", "v*").await;

    // same digest again: allowed
    let body = env.image_manifest(repo, "one", None).await;
    assert_eq!(env.put_manifest(repo, "v1", OCI_MANIFEST, &body).await.status, StatusCode::CREATED);
    // another digest onto the protected tag: 412 PROTECTED
    let body2 = env.image_manifest(repo, "two", None).await;
    let a = env.put_manifest(repo, "v1", OCI_MANIFEST, &body2).await;
    assert_eq!(a.status, StatusCode::PRECONDITION_FAILED, "{}", a.text());
    assert_eq!(a.code(), "PROTECTED");
    assert!(a.text().contains("v1"), "{}", a.text());
    // moving it through the management API, deleting the tag, deleting the artifact
    let mv = env
        .call(Method::PUT, &format!("/api/v1/images/{repo}/tags/v1"), Some("application/json"), {
            json!({ "digest": other.to_string() }).to_string().into_bytes()
        })
        .await;
    assert_eq!(mv.status, StatusCode::PRECONDITION_FAILED, "{}", mv.text());
    let del_tag = env.call(Method::DELETE, &format!("/v2/{repo}/manifests/v1"), None, vec![]).await;
    assert_eq!(del_tag.status, StatusCode::PRECONDITION_FAILED, "{}", del_tag.text());
    let del = env.call(Method::DELETE, &format!("/v2/{repo}/manifests/{v1}"), None, vec![]).await;
    assert_eq!(del.status, StatusCode::PRECONDITION_FAILED, "{}", del.text());
    let api_del = env.call(Method::DELETE, &format!("/api/v1/images/{repo}/artifacts/{v1}"), None, vec![]).await;
    assert_eq!(api_del.status, StatusCode::PRECONDITION_FAILED, "{}", api_del.text());
    let api_tag = env.call(Method::DELETE, &format!("/api/v1/images/{repo}/tags/v1"), None, vec![]).await;
    assert_eq!(api_tag.status, StatusCode::PRECONDITION_FAILED, "{}", api_tag.text());
    let whole = env.call(Method::DELETE, &format!("/api/v1/images/{repo}"), None, vec![]).await;
    assert_eq!(whole.status, StatusCode::PRECONDITION_FAILED, "{}", whole.text());
    assert!(env.exists(repo, &v1).await);
    assert_eq!(env.tags(repo).await, ["scratch", "v1"]);
    // a new v* tag may be created; the unprotected tag may move and go
    env.tag(repo, "v2", &other).await;
    let gone = env.call(Method::DELETE, &format!("/v2/{repo}/manifests/scratch"), None, vec![]).await;
    assert_eq!(gone.status, StatusCode::ACCEPTED, "{}", gone.text());

    // cosign-style signature tags stay writable under a `**` rule
    env.protect("team", "**", "**").await;
    let hex = v1.to_string().trim_start_matches("sha256:").to_string();
    for label in ["sig one", "sig two"] {
        let sig = env.image_manifest(repo, label, None).await;
        let a = env.put_manifest(repo, &format!("sha256-{hex}.sig"), OCI_MANIFEST, &sig).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    }

    // disabling every rule lifts the protection
    for r in protection::list(env.app.meta.as_ref(), "team").await.unwrap() {
        protection::set_enabled(env.app.meta.as_ref(), "team", &r.id, false).await.unwrap();
    }
    assert_eq!(env.put_manifest(repo, "v1", OCI_MANIFEST, &body2).await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn garbage_collection_runs_on_its_schedule_once_per_due_time() {
    let env = Env::new();
    prepare(&env.app, &env.prepared).await;
    berth::jobs::ensure_builtins(&env.app).await.unwrap();
    let gc = berth::schedule::get(env.app.meta.as_ref(), "housekeeping/gc").await.unwrap().unwrap();
    assert_eq!(gc.cron, berth::jobs::DEFAULT_GC_SCHEDULE);
    assert_eq!(gc.next_due, T0 + 4 * 3600 + 30 * 60, "the first collection is at 04:30 UTC, not at once");
    env.set_time(T0 + 4 * 3600 + 30 * 60 + 7);
    let (a, b) = tokio::join!(berth::schedule::fire_due(&env.app), berth::schedule::fire_due(&env.app));
    assert!(a.unwrap() + b.unwrap() >= 1);
    env.work().await;
    let (runs, _) = berth::gc::list(&env.app, None, 10).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].queued_at, T0 + 4 * 3600 + 30 * 60);
    assert!(!runs[0].dry_run);
    assert_eq!(serde_json::to_value(&runs[0]).unwrap()["status"], "succeeded");
}
