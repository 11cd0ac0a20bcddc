//! Image cleanup and protection, in process on the embedded backend with a test clock: the exact
//! semantics of the retain rules (union across rules and images, a kept tag keeps its artifact,
//! protection beats cleanup, disabled rules, test runs, each keep policy at its boundary), what
//! goes with a deleted artifact (referrers, index children), a run interrupted at arbitrary points
//! and resumed, cleanup cycles firing once per due time, and every protected operation refused
//! through the registry API.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use berth::metadata::UnixTime;
use berth::oci::Digest;
use berth::policy::cleanup::{self, Action, CleanupRun, Keep, NewRule, RunStatus, TagMode, Trigger};
use berth::policy::protection;
use common::registry::{TestRegistry, OCI_INDEX, OCI_MANIFEST};
use http::{Method, StatusCode};
use serde_json::json;

const DAY: i64 = 86_400;
/// 2027-01-15T00:00:00Z
const T0: UnixTime = 1_799_971_200;

/// A registry whose clock stands at [`T0`].
fn registry() -> TestRegistry {
    TestRegistry::embedded().with_clock(T0)
}

fn rule(image: &str, tag: &str, mode: TagMode, untagged: bool, keep: &str) -> NewRule {
    NewRule { image: image.into(), tag: tag.into(), tag_mode: mode, untagged, keep: keep.parse::<Keep>().unwrap() }
}

/// The manifest of an image with a `{}` config and one unique layer (`label`), optionally about
/// `subject`, its blobs uploaded into `repo`.
async fn image_manifest(env: &TestRegistry, repo: &str, label: &str, subject: Option<&Digest>) -> Vec<u8> {
    env.upload_image(repo, b"{}", &[label.as_bytes()], subject).await
}

/// Pushes an artifact under `reference` (a tag, or `@` for by digest) one second after the last.
async fn push(env: &TestRegistry, repo: &str, reference: &str, label: &str) -> Digest {
    env.advance(1);
    let tag = (reference != "@").then_some(reference);
    env.push_image_of(repo, tag, b"{}", &[label.as_bytes()]).await.1
}

async fn add_rule(env: &TestRegistry, registry: &str, r: NewRule) -> String {
    env.ready().await;
    cleanup::add_rule(env.app.meta.as_ref(), registry, &r, env.now()).await.unwrap().id
}

async fn protect(env: &TestRegistry, registry: &str, image: &str, tag: &str) -> String {
    env.ready().await;
    protection::add(env.app.meta.as_ref(), registry, image, tag, env.now()).await.unwrap().id
}

/// Starts a run, works the queue until it ends, and returns it with its decisions.
async fn run_cleanup(env: &TestRegistry, registry: &str, dry_run: bool) -> (CleanupRun, Vec<cleanup::Decision>) {
    let started = cleanup::start(&env.app, registry, dry_run).await.unwrap();
    assert_eq!(started.status, RunStatus::Queued);
    env.work().await;
    let run = cleanup::run(env.app.meta.as_ref(), registry, &started.id).await.unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    let (decisions, next) = cleanup::decisions(env.app.meta.as_ref(), registry, &run.id, 0, 1000).await.unwrap();
    assert!(next.is_none());
    (run, decisions)
}

fn decision<'a>(decisions: &'a [cleanup::Decision], digest: &Digest) -> &'a cleanup::Decision {
    decisions.iter().find(|d| d.digest == digest.to_string()).unwrap_or_else(|| panic!("no decision for {digest}"))
}

on_both_backends!(union_of_two_rules_across_two_images_and_untouched_images);

async fn union_of_two_rules_across_two_images_and_untouched_images(env: TestRegistry) {
    let env = env.with_clock(T0);
    let a1 = push(&env, "team/a", "v1", "a1").await;
    let a2 = push(&env, "team/a", "x2", "a2").await;
    let a3 = push(&env, "team/a", "@", "a3").await; // untagged
    let a4 = push(&env, "team/a", "x4", "a4").await;
    let b1 = push(&env, "team/b", "x1", "b1").await;
    let b2 = push(&env, "team/b", "x2", "b2").await;
    env.advance(10);

    // rule 1: image a, every tag and untagged, keep the 2 latest pushed; b is not selected
    let c1 = add_rule(&env, "team", rule("a", "**", TagMode::Match, true, "latest-pushed:2")).await;
    let (run, decisions) = run_cleanup(&env, "team", false).await;
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
    let a5 = push(&env, "team/a", "v5", "a5").await;
    let a6 = push(&env, "team/a", "x6", "a6").await;
    let a7 = push(&env, "team/a", "x7", "a7").await;
    env.advance(10);
    add_rule(&env, "team", rule("**", "v*", TagMode::Match, false, "always")).await;
    let (run, decisions) = run_cleanup(&env, "team", false).await;
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
    let env = registry();
    let both = push(&env, "team/app", "dev-1", "one").await;
    env.tag("team/app", "prod-1", &both).await;
    let dev = push(&env, "team/app", "dev-2", "two").await;
    env.advance(5);
    add_rule(&env, "team", rule("**", "prod-*", TagMode::Match, false, "always")).await;
    let (run, decisions) = run_cleanup(&env, "team", false).await;
    assert!(env.exists("team/app", &both).await);
    assert!(!env.exists("team/app", &dev).await);
    assert_eq!(env.tags("team/app").await, ["dev-1", "prod-1"]);
    assert_eq!(decision(&decisions, &dev).reason, "no rule selects its tags");
    assert_eq!((run.retained, run.deleted), (1, 1));
}

on_both_backends!(protection_beats_cleanup_and_history_says_so);

async fn protection_beats_cleanup_and_history_says_so(env: TestRegistry) {
    let env = env.with_clock(T0);
    let old = push(&env, "team/svc", "1.0", "old").await;
    let newer = push(&env, "team/svc", "2.0", "new").await;
    env.advance(5);
    let p = protect(&env, "team", "svc", "1.*").await;
    add_rule(&env, "team", rule("**", "**", TagMode::Match, true, "latest-pushed:0")).await;
    let (run, decisions) = run_cleanup(&env, "team", false).await;
    assert!(env.exists("team/svc", &old).await, "the protected artifact stays");
    assert!(!env.exists("team/svc", &newer).await);
    let d = decision(&decisions, &old);
    assert_eq!(d.action, Action::Protected);
    assert!(d.reason.contains(&format!("protection rule {p}")), "{}", d.reason);
    assert_eq!((run.protected, run.deleted, run.retained), (1, 1, 0));
}

#[tokio::test]
async fn disabled_rules_do_nothing_and_test_runs_delete_nothing() {
    let env = registry();
    let one = push(&env, "team/web", "a", "1").await;
    let two = push(&env, "team/web", "b", "2").await;
    env.advance(5);
    let id = add_rule(&env, "team", rule("**", "**", TagMode::Match, true, "latest-pushed:1")).await;
    cleanup::set_enabled(env.app.meta.as_ref(), "team", &id, false).await.unwrap();
    let (run, decisions) = run_cleanup(&env, "team", false).await;
    assert_eq!((run.total, run.deleted, run.images), (0, 0, 0));
    assert!(decisions.is_empty() && run.rules.is_empty());

    cleanup::set_enabled(env.app.meta.as_ref(), "team", &id, true).await.unwrap();
    let (run, decisions) = run_cleanup(&env, "team", true).await;
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
    let env = registry();
    add_rule(&env, "team", rule("a/**", "v*", TagMode::Match, false, "latest-pushed:3")).await;
    let again = cleanup::add_rule(
        env.app.meta.as_ref(),
        "team",
        &rule("a/**", "v*", TagMode::Match, false, "latest-pushed:3"),
        0,
    )
    .await;
    assert!(matches!(again, Err(cleanup::CleanupError::Duplicate { ref rule, .. }) if rule == "c1"), "{again:?}");
    // a different policy is a different rule
    add_rule(&env, "team", rule("a/**", "v*", TagMode::Match, false, "latest-pushed:4")).await;
}

#[tokio::test]
async fn day_policies_at_their_boundary() {
    let env = registry();
    let edge = push(&env, "team/d", "edge", "edge").await; // pushed at T0+1
    let before = push(&env, "team/d", "before", "before").await; // T0+2
    env.set_time(T0 + 1 + 7 * DAY);
    // the same second as 7 days after `edge`: kept; `before` is a second younger: kept too
    add_rule(&env, "team", rule("**", "**", TagMode::Match, false, "pushed-within:7d")).await;
    let (run, _) = run_cleanup(&env, "team", true).await;
    assert_eq!((run.retained, run.deleted), (2, 0));
    env.set_time(T0 + 2 + 7 * DAY);
    let (run, decisions) = run_cleanup(&env, "team", true).await;
    assert_eq!((run.retained, run.deleted), (1, 1));
    assert_eq!(decision(&decisions, &edge).action, Action::Delete);
    assert_eq!(decision(&decisions, &before).action, Action::Retain);
}

#[tokio::test]
async fn pulled_within_counts_a_fresh_push_as_pulled_and_a_get_as_a_pull() {
    let env = registry();
    let pulled = push(&env, "team/p", "pulled", "p").await; // T0+1
    let never = push(&env, "team/p", "never", "n").await; // T0+2
                                                          // 20 days later, `pulled` is pulled (GET); HEAD does not count
    env.set_time(T0 + 20 * DAY);
    let a = env.call(Method::GET, "/v2/team/p/manifests/pulled", &[], vec![]).await;
    assert_eq!(a.status, StatusCode::OK);
    let h = env.call(Method::HEAD, "/v2/team/p/manifests/never", &[], vec![]).await;
    assert_eq!(h.status, StatusCode::OK);
    add_rule(&env, "team", rule("**", "**", TagMode::Match, false, "pulled-within:7d")).await;
    env.set_time(T0 + 27 * DAY);
    let (_, decisions) = run_cleanup(&env, "team", true).await;
    assert_eq!(decision(&decisions, &pulled).action, Action::Retain, "pulled exactly 7 days ago");
    assert_eq!(decision(&decisions, &never).action, Action::Delete, "never pulled, pushed 27 days ago");
    // and a push of today counts as pulled today
    let fresh = push(&env, "team/p", "fresh", "f").await;
    env.advance(60);
    let (_, decisions) = run_cleanup(&env, "team", true).await;
    assert_eq!(decision(&decisions, &fresh).action, Action::Retain);
}

on_both_backends!(referrers_and_index_children_go_with_their_parent);

async fn referrers_and_index_children_go_with_their_parent(env: TestRegistry) {
    let env = env.with_clock(T0);
    let repo = "team/multi";
    // two platform images, an index listing both, a signature of the index
    let amd = image_manifest(&env, repo, "amd64", None).await;
    let arm = image_manifest(&env, repo, "arm64", None).await;
    let (amd_d, arm_d) = (Digest::sha256_of(&amd), Digest::sha256_of(&arm));
    env.advance(1);
    for (d, body) in [(&amd_d, &amd), (&arm_d, &arm)] {
        assert_eq!(env.push_manifest(repo, &d.to_string(), OCI_MANIFEST, body).await.status, StatusCode::CREATED);
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
    assert_eq!(env.push_manifest(repo, "old", OCI_INDEX, &index).await.status, StatusCode::CREATED);
    let sig = image_manifest(&env, repo, "signature", Some(&index_d)).await;
    let sig_d = Digest::sha256_of(&sig);
    assert_eq!(env.push_manifest(repo, &sig_d.to_string(), OCI_MANIFEST, &sig).await.status, StatusCode::CREATED);
    let keep = push(&env, repo, "new", "newest").await;
    env.advance(5);

    add_rule(&env, "team", rule("**", "**", TagMode::Match, true, "latest-pushed:1")).await;
    let (run, decisions) = run_cleanup(&env, "team", false).await;
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
    let env = registry();
    let repo = "team/many";
    let n = 450; // three chunks of decisions
    let mut digests = vec![];
    for i in 0..n {
        digests.push(push(&env, repo, &format!("t{i:04}"), &format!("artifact {i}")).await);
    }
    env.advance(5);
    add_rule(&env, "team", rule("**", "**", TagMode::Match, false, "latest-pushed:7")).await;
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
    let env = registry();
    push(&env, "team/race", "old", "old").await;
    add_rule(&env, "team", rule("**", "**", TagMode::Match, true, "latest-pushed:0")).await;
    let started = cleanup::start(&env.app, "team", false).await.unwrap();
    // the worker starts this run at T, and an artifact pushed at T is in flight
    let fresh = push(&env, "team/race", "fresh", "fresh").await;
    env.work().await;
    let run = cleanup::run(env.app.meta.as_ref(), "team", &started.id).await.unwrap();
    assert!(env.exists("team/race", &fresh).await);
    assert_eq!((run.deleted, run.retained), (1, 1), "{run:?}");
}

on_both_backends!(cleanup_cycles_fire_once_per_due_time);

async fn cleanup_cycles_fire_once_per_due_time(env: TestRegistry) {
    let env = env.with_clock(T0);
    let old = push(&env, "team/cyc", "old", "old").await;
    let newer = push(&env, "team/cyc", "new", "new").await;
    add_rule(&env, "team", rule("**", "**", TagMode::Match, false, "latest-pushed:1")).await;
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
    let env = registry();
    let repo = "team/prot";
    let v1 = push(&env, repo, "v1", "one").await;
    let other = push(&env, repo, "scratch", "two").await;
    protect(&env, "team", "prot", "v*").await;

    // same digest again: allowed
    let body = image_manifest(&env, repo, "one", None).await;
    assert_eq!(env.push_manifest(repo, "v1", OCI_MANIFEST, &body).await.status, StatusCode::CREATED);
    // another digest onto the protected tag: 412 PROTECTED
    let body2 = image_manifest(&env, repo, "two", None).await;
    let a = env.push_manifest(repo, "v1", OCI_MANIFEST, &body2).await;
    assert_eq!(a.status, StatusCode::PRECONDITION_FAILED, "{}", a.text());
    assert_eq!(a.code(), "PROTECTED");
    assert!(a.text().contains("v1"), "{}", a.text());
    // moving it through the management API, deleting the tag, deleting the artifact
    let mv = env
        .call_json(
            Method::PUT,
            &format!("/api/v1/images/{repo}/tags/v1"),
            &json!({ "digest": other.to_string() }).to_string(),
        )
        .await;
    assert_eq!(mv.status, StatusCode::PRECONDITION_FAILED, "{}", mv.text());
    let del_tag = env.call(Method::DELETE, &format!("/v2/{repo}/manifests/v1"), &[], vec![]).await;
    assert_eq!(del_tag.status, StatusCode::PRECONDITION_FAILED, "{}", del_tag.text());
    let del = env.call(Method::DELETE, &format!("/v2/{repo}/manifests/{v1}"), &[], vec![]).await;
    assert_eq!(del.status, StatusCode::PRECONDITION_FAILED, "{}", del.text());
    let api_del = env.call(Method::DELETE, &format!("/api/v1/images/{repo}/artifacts/{v1}"), &[], vec![]).await;
    assert_eq!(api_del.status, StatusCode::PRECONDITION_FAILED, "{}", api_del.text());
    let api_tag = env.call(Method::DELETE, &format!("/api/v1/images/{repo}/tags/v1"), &[], vec![]).await;
    assert_eq!(api_tag.status, StatusCode::PRECONDITION_FAILED, "{}", api_tag.text());
    let whole = env.call(Method::DELETE, &format!("/api/v1/images/{repo}"), &[], vec![]).await;
    assert_eq!(whole.status, StatusCode::PRECONDITION_FAILED, "{}", whole.text());
    assert!(env.exists(repo, &v1).await);
    assert_eq!(env.tags(repo).await, ["scratch", "v1"]);
    // a new v* tag may be created; the unprotected tag may move and go
    env.tag(repo, "v2", &other).await;
    let gone = env.call(Method::DELETE, &format!("/v2/{repo}/manifests/scratch"), &[], vec![]).await;
    assert_eq!(gone.status, StatusCode::ACCEPTED, "{}", gone.text());

    // cosign-style signature tags stay writable under a `**` rule
    protect(&env, "team", "**", "**").await;
    let hex = v1.to_string().trim_start_matches("sha256:").to_string();
    for label in ["sig one", "sig two"] {
        let sig = image_manifest(&env, repo, label, None).await;
        let a = env.push_manifest(repo, &format!("sha256-{hex}.sig"), OCI_MANIFEST, &sig).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    }

    // disabling every rule lifts the protection
    for r in protection::list(env.app.meta.as_ref(), "team").await.unwrap() {
        protection::set_enabled(env.app.meta.as_ref(), "team", &r.id, false).await.unwrap();
    }
    assert_eq!(env.push_manifest(repo, "v1", OCI_MANIFEST, &body2).await.status, StatusCode::CREATED);
    env.work().await; // the usage refreshes its pushes queued
}

#[tokio::test]
async fn garbage_collection_runs_on_its_schedule_once_per_due_time() {
    let env = registry();
    env.ready().await;
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
