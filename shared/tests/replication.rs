//! Replication in process, with a test clock, against a real `berth serve` target (this crate's
//! own binary, on loopback): the scheduled trigger fires once per due time however many
//! schedulers tick, an event trigger only copies pushes made after its policy, a copy cut into
//! many steps resumes its upload without re-sending finished bytes, and the history counts it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use berth::metadata::UnixTime;
use berth::oci::Digest;
use berth::outbound::OutboundPolicy;
use berth::replication::history::{ExecutionStatus, TaskStatus};
use berth::replication::{history, policy, target};
use common::registry::TestRegistry;

/// 2027-01-15T00:00:00Z
const T0: UnixTime = 1_799_971_200;
const TARGET_KEY: &str = "BKREPLTARGET00000001";
const TARGET_SECRET: &str = "replication-target-secret";

/// A `berth serve` on a free loopback port with registry `team`, killed when dropped.
struct Target {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Target {
    async fn start() -> Target {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["serve", "--data-dir", dir.path().to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")])
            .env("BERTH_ADMIN_ACCESS_KEY", TARGET_KEY)
            .env("BERTH_ADMIN_SECRET_KEY", TARGET_SECRET)
            .env_remove("BERTH_OUTBOUND_ALLOW")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let target = Target { child, url: format!("http://127.0.0.1:{port}"), _dir: dir };
        let client = reqwest::Client::new();
        for _ in 0..300 {
            let ready =
                client.get(format!("{}/v2/", target.url)).basic_auth(TARGET_KEY, Some(TARGET_SECRET)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                let created = client
                    .post(format!("{}/api/v1/registries", target.url))
                    .basic_auth(TARGET_KEY, Some(TARGET_SECRET))
                    .json(&serde_json::json!({ "name": "team" }))
                    .send()
                    .await
                    .unwrap();
                assert!(created.status().is_success(), "{}", created.text().await.unwrap());
                return target;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the target berth did not start");
    }

    /// The digest `reference` names at the target, if any.
    async fn digest(&self, repo: &str, reference: &str) -> Option<String> {
        let r = reqwest::Client::new()
            .head(format!("{}/v2/{repo}/manifests/{reference}", self.url))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .basic_auth(TARGET_KEY, Some(TARGET_SECRET))
            .send()
            .await
            .unwrap();
        r.status().is_success().then(|| r.headers()["docker-content-digest"].to_str().unwrap().to_string())
    }

    async fn blob(&self, repo: &str, digest: &Digest) -> Vec<u8> {
        let r = reqwest::Client::new()
            .get(format!("{}/v2/{repo}/blobs/{digest}", self.url))
            .basic_auth(TARGET_KEY, Some(TARGET_SECRET))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        r.bytes().await.unwrap().to_vec()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A source registry on the test clock that may reach loopback targets.
async fn source() -> TestRegistry {
    let env = TestRegistry::embedded().with_clock(T0).with_settings(|s| {
        s.webhooks.outbound = OutboundPolicy::new(OutboundPolicy::parse_allow("127.0.0.0/8").unwrap());
    });
    env.ready().await;
    env
}

async fn add_target(env: &TestRegistry, t: &Target, chunk: Option<u64>) -> String {
    let new: target::NewTarget = serde_json::from_value(serde_json::json!({
        "name": "dr", "kind": "berth", "url": t.url, "username": TARGET_KEY, "password": TARGET_SECRET,
        "chunk_bytes": chunk,
    }))
    .unwrap();
    target::create(&env.app, "team", new, "admin").await.unwrap().id
}

async fn add_policy(env: &TestRegistry, target: &str, trigger: serde_json::Value) -> String {
    let new: policy::NewPolicy =
        serde_json::from_value(serde_json::json!({ "name": "to-dr", "target": target, "trigger": trigger })).unwrap();
    let view = policy::create(&env.app, "team", new, "admin", true).await.unwrap();
    assert_eq!(view.status, "Disabled", "disabled until the target is checked");
    env.work().await; // the target check
    let (stored, _) = policy::get(&env.app, "team", &view.id).await.unwrap();
    assert_eq!(stored.view().status, "Enabled", "{:?}", stored.view());
    view.id
}

#[tokio::test]
async fn scheduled_replication_fires_once_per_due_time() {
    let t = Target::start().await;
    let env = source().await;
    let digest = env.push_image("team/app", "v1").await;
    env.work().await;
    let target = add_target(&env, &t, None).await;
    let id = add_policy(&env, &target, serde_json::json!({ "type": "schedule", "cron": "0 3 * * *" })).await;
    assert_eq!(berth::schedule::fire_due(&env.app).await.unwrap(), 0, "not yet due");
    assert_eq!(t.digest("team/app", "v1").await, None);
    env.set_time(T0 + 3 * 3600 + 20);
    let (a, b) = tokio::join!(berth::schedule::fire_due(&env.app), berth::schedule::fire_due(&env.app));
    assert!(a.unwrap() + b.unwrap() >= 1);
    env.work().await;
    let (runs, _) = history::executions(&env.app, "team", &id, None, 100).await.unwrap();
    assert_eq!(runs.len(), 1, "one execution per due time: {runs:?}");
    assert_eq!((runs[0].trigger.as_str(), runs[0].status), ("schedule", ExecutionStatus::Succeeded));
    assert_eq!((runs[0].total, runs[0].succeeded, runs[0].failed), (1, 1, 0));
    assert_eq!(t.digest("team/app", "v1").await, Some(digest.to_string()));
    // the next due time copies nothing new: the task is skipped
    env.set_time(T0 + 86_400 + 3 * 3600 + 5);
    berth::schedule::fire_due(&env.app).await.unwrap();
    env.work().await;
    let (runs, _) = history::executions(&env.app, "team", &id, None, 100).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!((runs[0].skipped, runs[0].bytes), (1, 0), "newest first: {:?}", runs[0]);
}

#[tokio::test]
async fn event_trigger_copies_only_pushes_after_the_policy() {
    let t = Target::start().await;
    let env = source().await;
    let before = env.push_image("team/app", "old").await;
    env.work().await;
    let target = add_target(&env, &t, None).await;
    let id = add_policy(&env, &target, serde_json::json!({ "type": "event" })).await;
    env.advance(5);
    let after = env.push_image("team/app", "new").await;
    env.work().await;
    assert_eq!(t.digest("team/app", "new").await, Some(after.to_string()));
    assert_eq!(t.digest("team/app", "old").await, None, "{before} was pushed before the policy existed");
    let (runs, _) = history::executions(&env.app, "team", &id, None, 100).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!((runs[0].trigger.as_str(), runs[0].status), ("event", ExecutionStatus::Succeeded));
}

#[tokio::test]
async fn a_copy_cut_into_steps_resumes_its_upload() {
    let t = Target::start().await;
    // every step stops after one chunk of 1 MiB
    let env = source().await.with_settings(|s| s.replication.step = Duration::from_millis(1));
    let layer: Vec<u8> =
        (0..(3 * 1024 * 1024 + 17)).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let (_, digest) = env.push_image_of("team/big", Some("v1"), b"{}", &[&layer]).await;
    env.work().await;
    let target = add_target(&env, &t, Some(1024 * 1024)).await;
    let id = add_policy(&env, &target, serde_json::json!({ "type": "manual" })).await;
    let started = berth::replication::run::start_manual(&env.app, "team", &id).await.unwrap();
    env.work().await;
    let run = history::execution(&env.app, "team", &id, &started.id).await.unwrap();
    assert_eq!(run.status, ExecutionStatus::Succeeded, "{run:?}");
    let (tasks, _) = history::tasks(&env.app, "team", &id, &started.id, None, 10).await.unwrap();
    assert_eq!(tasks[0].status, TaskStatus::Succeeded);
    assert_eq!(tasks[0].attempts, 1, "pauses are not attempts");
    // every byte sent once: the layer and the `{}` config
    assert_eq!(tasks[0].bytes, layer.len() as u64 + 2, "{:?}", tasks[0]);
    assert_eq!(run.bytes, tasks[0].bytes);
    assert_eq!(t.digest("team/big", "v1").await, Some(digest.to_string()));
    let layer_digest = Digest::sha256_of(&layer);
    assert_eq!(t.blob("team/big", &layer_digest).await, layer);
    let copy_jobs = env.sent_jobs().iter().filter(|(j, _)| j.kind == "replicate-artifact").count();
    assert!(copy_jobs >= 4, "the copy took several steps ({copy_jobs} jobs)");
}

#[tokio::test]
async fn disabling_a_policy_stops_its_copy_between_chunks() {
    let t = Target::start().await;
    let env = source().await.with_settings(|s| s.replication.step = Duration::from_millis(1));
    let layer: Vec<u8> = (0..(4 * 1024 * 1024)).map(|i: u32| (i.wrapping_mul(40_503) >> 7) as u8).collect();
    env.push_image_of("team/stop", Some("v1"), b"{}", &[&layer]).await;
    env.work().await;
    let target = add_target(&env, &t, Some(1024 * 1024)).await;
    let id = add_policy(&env, &target, serde_json::json!({ "type": "manual" })).await;
    let started = berth::replication::run::start_manual(&env.app, "team", &id).await.unwrap();
    // the plan, then the first copy steps: one chunk each
    for _ in 0..3 {
        berth::jobs::work_once(&env.app, 1).await.unwrap();
    }
    let (tasks, _) = history::tasks(&env.app, "team", &id, &started.id, None, 10).await.unwrap();
    assert_eq!(tasks[0].status, TaskStatus::Running, "{:?}", tasks[0]);
    let patch: policy::PolicyPatch = serde_json::from_value(serde_json::json!({ "enabled": false })).unwrap();
    policy::update(&env.app, "team", &id, patch, true).await.unwrap();
    env.work().await;
    let (tasks, _) = history::tasks(&env.app, "team", &id, &started.id, None, 10).await.unwrap();
    assert_eq!(tasks[0].status, TaskStatus::Failed, "{:?}", tasks[0]);
    assert!(tasks[0].error.as_deref().unwrap_or_default().contains("disabled"), "{:?}", tasks[0]);
    assert!(tasks[0].bytes < layer.len() as u64, "the copy went on: {:?}", tasks[0]);
    let run = history::execution(&env.app, "team", &id, &started.id).await.unwrap();
    assert_eq!((run.status, run.failed), (ExecutionStatus::Failed, 1));
    assert_eq!(t.digest("team/stop", "v1").await, None, "nothing half-written is visible at the target");
}

#[test]
fn a_trigger_takes_cron_only_with_a_schedule() {
    let parse = |v: serde_json::Value| serde_json::from_value::<policy::Trigger>(v).map_err(|e| e.to_string());
    assert_eq!(parse(serde_json::json!({ "type": "manual" })), Ok(policy::Trigger::Manual));
    assert_eq!(
        parse(serde_json::json!({ "type": "schedule", "cron": "0 3 * * *" })),
        Ok(policy::Trigger::Schedule { cron: "0 3 * * *".into() })
    );
    for bad in [
        serde_json::json!({ "type": "manual", "cron": "* * * * *" }),
        serde_json::json!({ "type": "event", "bogus": 1 }),
        serde_json::json!({ "type": "schedule" }),
        serde_json::json!({ "type": "hourly" }),
    ] {
        assert!(parse(bad.clone()).is_err(), "{bad}");
    }
    // what is stored reads back
    let stored = serde_json::to_value(policy::Trigger::Schedule { cron: "0 3 * * *".into() }).unwrap();
    assert_eq!(parse(stored), Ok(policy::Trigger::Schedule { cron: "0 3 * * *".into() }));
}

#[tokio::test]
async fn a_second_run_waits_for_the_first() {
    let t = Target::start().await;
    let env = source().await;
    env.push_image("team/once", "v1").await;
    env.work().await;
    let target = add_target(&env, &t, None).await;
    let id = add_policy(&env, &target, serde_json::json!({ "type": "manual" })).await;
    let first = berth::replication::run::start_manual(&env.app, "team", &id).await.unwrap();
    let refused = berth::replication::run::start_manual(&env.app, "team", &id).await.unwrap_err();
    assert!(refused.to_string().contains(&first.id), "{refused}");
    env.work().await;
    let second = berth::replication::run::start_manual(&env.app, "team", &id).await.unwrap();
    env.work().await;
    let (runs, _) = history::executions(&env.app, "team", &id, None, 10).await.unwrap();
    assert_eq!(runs.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), vec![second.id, first.id]);
}

#[tokio::test]
async fn history_keeps_the_newest_executions() {
    let env = source().await;
    let total = history::MAX_EXECUTIONS + 7;
    for n in 0..total {
        let mut e = history::new_execution(history::execution_id(n as i64, "t"), "team", "rp-x", "manual", T0);
        e.status = ExecutionStatus::Succeeded;
        e.planned = true;
        // written directly, as `create` would, without its occasional trim
        let task =
            history::TaskRecord::new(history::task_id(1), "team/a".into(), "dr/a".into(), "sha256:0".into(), vec![]);
        assert!(history::create(&env.app, &e).await.unwrap() || n > 0);
        history::put_task(&env.app, "team", "rp-x", &e.id, &task, berth::metadata::Expect::Any).await.unwrap();
    }
    history::trim(&env.app, "team", "rp-x").await.unwrap();
    let mut kept = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let (page, more) = history::executions(&env.app, "team", "rp-x", last.as_deref(), 200).await.unwrap();
        kept.extend(page.iter().map(|e| e.id.clone()));
        if !more {
            break;
        }
        last = kept.last().cloned();
    }
    assert_eq!(kept.len(), history::MAX_EXECUTIONS);
    // the newest are kept: the highest start times, i.e. the smallest inverted ids
    assert_eq!(kept[0], history::execution_id((total - 1) as i64, "t"));
    let oldest = history::execution_id(0, "t");
    assert!(history::execution(&env.app, "team", "rp-x", &oldest).await.is_err());
    assert!(history::tasks(&env.app, "team", "rp-x", &oldest, None, 10).await.unwrap().0.is_empty());
}
