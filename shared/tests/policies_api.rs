//! The management API of image cleanup, image protection and garbage collection, end to end
//! through `berth::api::handle`: rule CRUD with exact statuses and bodies, the cleanup cycle, test
//! runs and runs executed by the job worker, run history paging, the 404 of a missing registry,
//! who may do what, and that every change is audited.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use berth::identity::Role;
use berth::metadata::UnixTime;
use common::registry::TestRegistry;
use http::{Method, StatusCode};
use serde_json::{json, Value};

/// 2027-01-15T08:00:00Z.
const T0: UnixTime = 1_800_000_000;

/// A registry whose clock stands at [`T0`].
fn registry() -> TestRegistry {
    TestRegistry::embedded().with_clock(T0)
}

const RULES: &str = "/api/v1/registries/team/cleanup/rules";
const SCHEDULE: &str = "/api/v1/registries/team/cleanup/schedule";
const RUNS: &str = "/api/v1/registries/team/cleanup/runs";
const PROTECTION: &str = "/api/v1/registries/team/protection/rules";

#[tokio::test]
async fn cleanup_rules_are_added_listed_toggled_and_deleted() {
    let env = registry();
    let a = env.call_json(Method::GET, RULES, "").await;
    assert_eq!((a.status, a.json()), (StatusCode::OK, json!({ "items": [], "next": null })));

    let body = r#"{"image":"app/**","tag":"**","untagged":true,"keep":"latest-pushed:10"}"#;
    let a = env.call_json(Method::POST, RULES, body).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let c1 = json!({ "id": "c1", "image": "app/**", "tag": "**", "tag_mode": "match", "untagged": true,
        "keep": "latest-pushed:10", "enabled": true, "created_at": T0 });
    assert_eq!(a.json(), c1);

    // the same rule again names the existing one
    let a = env.call_json(Method::POST, RULES, body).await;
    assert_eq!((a.status, a.code()), (StatusCode::CONFLICT, "ALREADY_EXISTS".to_string()));
    assert!(a.detail().contains("c1"), "{}", a.detail());

    let exclude = r#"{"image":"web","tag":"prod-*","tag_mode":"exclude","keep":"pushed-within:30d"}"#;
    let a = env.call_json(Method::POST, RULES, exclude).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    assert_eq!(
        a.json(),
        json!({ "id": "c2", "image": "web", "tag": "prod-*", "tag_mode": "exclude", "untagged": false,
            "keep": "pushed-within:30d", "enabled": true, "created_at": T0 })
    );

    for bad in [
        r#"{"image":"app","tag":"**","keep":"latest-pushed"}"#,
        r#"{"image":"app","tag":"**","keep":"pushed-within:7"}"#,
        r#"{"image":"app/{x","tag":"**","keep":"always"}"#,
        r#"{"image":"app","tag":"v{","keep":"always"}"#,
        r#"{"image":"app","tag":"**","keep":"always","colour":"red"}"#,
        r#"{"image":"app","tag":"**","tag_mode":"sometimes","keep":"always"}"#,
        r#"{"image":"app","keep":"always"}"#,
        "not json",
    ] {
        let a = env.call_json(Method::POST, RULES, bad).await;
        assert_eq!((a.status, a.code()), (StatusCode::BAD_REQUEST, "INVALID_REQUEST".to_string()), "{bad}");
    }
    let a = env.call_json(Method::POST, RULES, r#"{"image":"app/{x","tag":"**","keep":"always"}"#).await;
    assert!(a.detail().contains("app/{x"), "the detail names the pattern: {}", a.detail());

    let a = env.call_json(Method::PATCH, &format!("{RULES}/c1"), r#"{"enabled":false}"#).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let mut disabled = c1.clone();
    disabled["enabled"] = json!(false);
    assert_eq!(a.json(), disabled);
    let a = env.call_json(Method::PATCH, &format!("{RULES}/c1"), r#"{"enabled":"no"}"#).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = env.call_json(Method::PATCH, &format!("{RULES}/c9"), r#"{"enabled":true}"#).await;
    assert_eq!((a.status, a.code()), (StatusCode::NOT_FOUND, "NOT_FOUND".to_string()));

    let a = env.call_json(Method::GET, RULES, "").await;
    assert_eq!(a.json()["items"][0], disabled);
    assert_eq!(a.json()["items"].as_array().unwrap().len(), 2);

    let a = env.call_json(Method::DELETE, &format!("{RULES}/c1"), "").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text());
    assert!(a.body.is_empty());
    let a = env.call_json(Method::DELETE, &format!("{RULES}/c1"), "").await;
    assert_eq!((a.status, a.code()), (StatusCode::NOT_FOUND, "NOT_FOUND".to_string()));
    let a = env.call_json(Method::GET, RULES, "").await;
    assert_eq!(a.json()["items"].as_array().unwrap().iter().map(|r| r["id"].clone()).collect::<Vec<_>>(), ["c2"]);

    // at most 15 rules
    for n in 0..14 {
        let a = env.call_json(Method::POST, RULES, &format!(r#"{{"image":"i{n}","tag":"**","keep":"always"}}"#)).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    }
    let a = env.call_json(Method::POST, RULES, r#"{"image":"one-too-many","tag":"**","keep":"always"}"#).await;
    assert_eq!((a.status, a.code()), (StatusCode::CONFLICT, "CONFLICT".to_string()), "{}", a.text());
    // ids are never reused
    let a = env.call_json(Method::GET, RULES, "").await;
    assert_eq!(a.json()["items"].as_array().unwrap().last().unwrap()["id"], "c16");
}

#[tokio::test]
async fn the_cleanup_cycle_is_set_shown_and_removed() {
    let env = registry();
    let none = json!({ "cron": null, "next_run_at": null });
    let a = env.call_json(Method::GET, SCHEDULE, "").await;
    assert_eq!((a.status, a.json()), (StatusCode::OK, none.clone()));

    let a = env.call_json(Method::PUT, SCHEDULE, r#"{"cron":"0 3 * * *"}"#).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    // T0 is 08:00 UTC: the next 03:00 is the next day's
    let set = json!({ "cron": "0 3 * * *", "next_run_at": T0 - 8 * 3600 + 86_400 + 3 * 3600 });
    assert_eq!(a.json(), set);
    assert_eq!(env.call_json(Method::GET, SCHEDULE, "").await.json(), set);

    for (cron, field) in [("61 * * * *", "minute"), ("0 25 * * *", "hour"), ("0 3 * 13 *", "month")] {
        let a = env.call_json(Method::PUT, SCHEDULE, &json!({ "cron": cron }).to_string()).await;
        assert_eq!((a.status, a.code()), (StatusCode::BAD_REQUEST, "INVALID_REQUEST".to_string()), "{cron}");
        assert!(a.detail().contains(field), "{cron}: {}", a.detail());
    }
    let a = env.call_json(Method::PUT, SCHEDULE, r#"{"cron":"0 3 * *"}"#).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.detail().contains("5 fields"), "{}", a.detail());
    let a = env.call_json(Method::PUT, SCHEDULE, r#"{"cron":"0 0 31 2 *"}"#).await;
    assert_eq!((a.status, a.code()), (StatusCode::BAD_REQUEST, "INVALID_REQUEST".to_string()), "{}", a.text());
    let a = env.call_json(Method::PUT, SCHEDULE, "{}").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    // a refused change leaves the cycle as it was
    assert_eq!(env.call_json(Method::GET, SCHEDULE, "").await.json(), set);

    let a = env.call_json(Method::DELETE, SCHEDULE, "").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text());
    assert_eq!(env.call_json(Method::GET, SCHEDULE, "").await.json(), none);
}

#[tokio::test]
async fn test_runs_decide_and_runs_delete_what_no_rule_keeps() {
    let env = registry();
    let v1 = env.push_image("team/app", "v1").await;
    env.advance(10);
    env.push_image("team/app", "v2").await;
    env.advance(10);
    env.push_image("team/app", "v3").await;
    env.advance(10);
    env.push_image("team/other", "v1").await;
    env.advance(100);
    let a = env.call_json(Method::POST, RULES, r#"{"image":"app","tag":"**","keep":"latest-pushed:1"}"#).await;
    assert_eq!(a.status, StatusCode::CREATED);

    // a test run: queued, then decided by the job, nothing deleted
    let a = env.call_json(Method::POST, RUNS, r#"{"dry_run":true}"#).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text());
    let queued = a.json();
    assert_eq!(queued["status"], "queued");
    assert_eq!(queued["dry_run"], true);
    assert_eq!(queued["trigger"], "manual");
    assert_eq!(queued["registry"], "team");
    assert_eq!(queued["rules"][0]["id"], "c1");
    let test_id = queued["id"].as_str().unwrap().to_string();
    env.work().await;
    let a = env.call_json(Method::GET, &format!("{RUNS}/{test_id}"), "").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let run = a.json();
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!((run["images"].clone(), run["total"].clone()), (json!(1), json!(3)));
    assert_eq!(
        (run["retained"].clone(), run["deleted"].clone(), run["protected"].clone()),
        (json!(1), json!(2), json!(0))
    );
    assert_eq!(run["next_chunk"], Value::Null);
    let decisions = run["decisions"].as_array().unwrap();
    let by_tag = |tag: &str| decisions.iter().find(|d| d["tags"] == json!([tag])).unwrap().clone();
    assert_eq!(by_tag("v3")["action"], "retain");
    assert!(by_tag("v3")["reason"].as_str().unwrap().contains("c1"));
    assert_eq!(by_tag("v1")["action"], "delete");
    assert_eq!(by_tag("v1")["digest"], v1.to_string());
    assert_eq!(by_tag("v1")["image"], "team/app");
    assert_eq!(env.tags("team/app").await, ["v1", "v2", "v3"], "a test run deletes nothing");

    // protect v1, then run for real: v1 stays (protected), v2 goes, v3 is kept; team/other untouched
    let a = env.call_json(Method::POST, PROTECTION, r#"{"image":"app","tag":"v1"}"#).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    env.advance(60);
    let a = env.call_json(Method::POST, RUNS, "").await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "an empty body is a real run: {}", a.text());
    assert_eq!(a.json()["dry_run"], false);
    let real_id = a.json()["id"].as_str().unwrap().to_string();
    env.work().await;
    let run = env.call_json(Method::GET, &format!("{RUNS}/{real_id}"), "").await.json();
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        (run["retained"].clone(), run["deleted"].clone(), run["protected"].clone()),
        (json!(1), json!(1), json!(1))
    );
    assert_eq!(env.tags("team/app").await, ["v1", "v3"]);
    assert_eq!(env.tags("team/other").await, ["v1"]);

    // history: newest first, paged by run id
    let a = env.call_json(Method::GET, RUNS, "").await;
    let ids: Vec<String> =
        a.json()["items"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, [real_id.clone(), test_id.clone()]);
    let a = env.call_json(Method::GET, &format!("{RUNS}?n=1"), "").await;
    assert_eq!(a.json()["items"].as_array().unwrap().len(), 1);
    assert_eq!(a.json()["next"], json!(real_id));
    let a = env.call_json(Method::GET, &format!("{RUNS}?n=1&last={real_id}"), "").await;
    assert_eq!(a.json()["items"][0]["id"], json!(test_id));
    assert_eq!(a.json()["next"], Value::Null);

    // decisions page by chunk: this run has one chunk
    let a = env.call_json(Method::GET, &format!("{RUNS}/{real_id}?chunk=1"), "").await;
    assert_eq!((a.status, a.json()["decisions"].clone()), (StatusCode::OK, json!([])));
    let a = env.call_json(Method::GET, &format!("{RUNS}/{real_id}?chunk=x"), "").await;
    assert_eq!((a.status, a.code()), (StatusCode::BAD_REQUEST, "INVALID_REQUEST".to_string()));
    let a = env.call_json(Method::GET, &format!("{RUNS}/0000000000-nothing"), "").await;
    assert_eq!((a.status, a.code()), (StatusCode::NOT_FOUND, "NOT_FOUND".to_string()));
    let a = env.call_json(Method::POST, RUNS, r#"{"dry_run":"yes"}"#).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn protection_rules_are_added_listed_toggled_and_deleted() {
    let env = registry();
    let digest = env.push_image("team/app", "v1").await;
    let a = env.call_json(Method::GET, PROTECTION, "").await;
    assert_eq!((a.status, a.json()), (StatusCode::OK, json!({ "items": [], "next": null })));

    let a = env.call_json(Method::POST, PROTECTION, r#"{"image":"app","tag":"v*"}"#).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let p1 = json!({ "id": "p1", "image": "app", "tag": "v*", "enabled": true, "created_at": T0 });
    assert_eq!(a.json(), p1);
    let a = env.call_json(Method::POST, PROTECTION, r#"{"image":"app","tag":"v*"}"#).await;
    assert_eq!((a.status, a.code()), (StatusCode::CONFLICT, "ALREADY_EXISTS".to_string()));
    assert!(a.detail().contains("p1"), "{}", a.detail());
    for bad in [r#"{"image":"app/{","tag":"v*"}"#, r#"{"image":"app"}"#, r#"{"image":"a","tag":"b","x":1}"#] {
        let a = env.call_json(Method::POST, PROTECTION, bad).await;
        assert_eq!((a.status, a.code()), (StatusCode::BAD_REQUEST, "INVALID_REQUEST".to_string()), "{bad}");
    }

    // an enabled rule refuses deleting the artifact with the PROTECTED code
    let artifact = format!("/api/v1/images/team/app/artifacts/{digest}");
    let a = env.call_json(Method::DELETE, &artifact, "").await;
    assert_eq!((a.status, a.code()), (StatusCode::PRECONDITION_FAILED, "PROTECTED".to_string()), "{}", a.text());
    assert!(a.detail().contains("p1"), "{}", a.detail());

    let a = env.call_json(Method::PATCH, &format!("{PROTECTION}/p1"), r#"{"enabled":false}"#).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let mut disabled = p1.clone();
    disabled["enabled"] = json!(false);
    assert_eq!(a.json(), disabled);
    assert_eq!(env.call_json(Method::GET, PROTECTION, "").await.json(), json!({ "items": [disabled], "next": null }));
    let a = env.call_json(Method::PATCH, &format!("{PROTECTION}/p7"), r#"{"enabled":true}"#).await;
    assert_eq!((a.status, a.code()), (StatusCode::NOT_FOUND, "NOT_FOUND".to_string()));

    let a = env.call_json(Method::DELETE, &format!("{PROTECTION}/p1"), "").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text());
    let a = env.call_json(Method::DELETE, &format!("{PROTECTION}/p1"), "").await;
    assert_eq!((a.status, a.code()), (StatusCode::NOT_FOUND, "NOT_FOUND".to_string()));
    assert_eq!(env.call_json(Method::DELETE, &artifact, "").await.status, StatusCode::NO_CONTENT);
    env.work().await; // the usage refreshes its pushes queued
}

#[tokio::test]
async fn every_policy_route_answers_404_for_a_missing_registry() {
    let env = registry();
    let cases = [
        (Method::GET, "cleanup/rules", ""),
        (Method::POST, "cleanup/rules", r#"{"image":"a","tag":"b","keep":"always"}"#),
        (Method::PATCH, "cleanup/rules/c1", r#"{"enabled":true}"#),
        (Method::DELETE, "cleanup/rules/c1", ""),
        (Method::GET, "cleanup/schedule", ""),
        (Method::PUT, "cleanup/schedule", r#"{"cron":"0 3 * * *"}"#),
        (Method::DELETE, "cleanup/schedule", ""),
        (Method::GET, "cleanup/runs", ""),
        (Method::POST, "cleanup/runs", r#"{"dry_run":true}"#),
        (Method::GET, "cleanup/runs/0000000000-x", ""),
        (Method::GET, "protection/rules", ""),
        (Method::POST, "protection/rules", r#"{"image":"a","tag":"b"}"#),
        (Method::PATCH, "protection/rules/p1", r#"{"enabled":true}"#),
        (Method::DELETE, "protection/rules/p1", ""),
    ];
    for (method, rest, body) in cases {
        let uri = format!("/api/v1/registries/nope/{rest}");
        let a = env.call_json(method.clone(), &uri, body).await;
        assert_eq!((a.status, a.code()), (StatusCode::NOT_FOUND, "NOT_FOUND".to_string()), "{method} {uri}");
        assert!(a.detail().contains("\"nope\""), "{}", a.detail());
    }
    // nothing was created for it
    assert!(berth::policy::cleanup::rules(env.app.meta.as_ref(), "nope").await.unwrap().is_empty());
    assert!(env.app.queue.receive(10, berth::jobs::LEASE).await.unwrap().is_empty());
}

#[tokio::test]
async fn garbage_collection_runs_are_started_listed_and_shown_by_administrators() {
    let env = registry();
    let a = env.call_json(Method::POST, "/api/v1/gc/runs", r#"{"dry_run":true}"#).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text());
    let run = a.json();
    assert_eq!((run["status"].clone(), run["dry_run"].clone()), (json!("queued"), json!(true)));
    let id = run["id"].as_str().unwrap().to_string();
    let a = env.call_json(Method::GET, "/api/v1/gc/runs", "").await;
    assert_eq!(a.json()["items"][0]["id"], json!(id));
    env.work().await;
    let a = env.call_json(Method::GET, &format!("/api/v1/gc/runs/{id}"), "").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()["status"], "succeeded", "{}", a.text());
    let a = env.call_json(Method::GET, "/api/v1/gc/runs/999999999999-00000000", "").await;
    assert_eq!((a.status, a.code()), (StatusCode::NOT_FOUND, "NOT_FOUND".to_string()));
    let a = env.call_json(Method::POST, "/api/v1/gc/runs", r#"{"dry":true}"#).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);

    // only an administrator of every registry (a role holding every action, over every registry)
    let viewer = env.user("viewer", Role::ServiceViewer, None).await;
    let scoped = env.user("scoped", Role::ProjectAdmin, Some(vec!["team"])).await;
    for creds in [&viewer, &scoped] {
        for (method, uri) in [(Method::GET, "/api/v1/gc/runs".to_string()), (Method::POST, "/api/v1/gc/runs".into())] {
            let a = env.call_as(creds, method, &uri, "").await;
            assert_eq!((a.status, a.code()), (StatusCode::FORBIDDEN, "DENIED".to_string()), "{uri}");
        }
        let a = env.call_as(creds, Method::GET, &format!("/api/v1/gc/runs/{id}"), "").await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn viewers_and_uploaders_read_policies_and_members_manage_them() {
    let env = registry();
    let a = env.call_json(Method::POST, RULES, r#"{"image":"**","tag":"**","keep":"always"}"#).await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = env.call_json(Method::POST, PROTECTION, r#"{"image":"**","tag":"release-*"}"#).await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = env.call_json(Method::POST, RUNS, r#"{"dry_run":true}"#).await;
    let run = a.json()["id"].as_str().unwrap().to_string();

    let reads = [
        (Method::GET, RULES.to_string()),
        (Method::GET, SCHEDULE.to_string()),
        (Method::GET, RUNS.to_string()),
        (Method::GET, format!("{RUNS}/{run}")),
        (Method::GET, PROTECTION.to_string()),
    ];
    let changes: Vec<(Method, String, &str)> = vec![
        (Method::POST, RULES.to_string(), r#"{"image":"x","tag":"**","keep":"always"}"#),
        (Method::PATCH, format!("{RULES}/c1"), r#"{"enabled":false}"#),
        (Method::DELETE, format!("{RULES}/c1"), ""),
        (Method::PUT, SCHEDULE.to_string(), r#"{"cron":"0 3 * * *"}"#),
        (Method::DELETE, SCHEDULE.to_string(), ""),
        (Method::POST, RUNS.to_string(), r#"{"dry_run":true}"#),
        (Method::POST, PROTECTION.to_string(), r#"{"image":"x","tag":"v*"}"#),
        (Method::PATCH, format!("{PROTECTION}/p1"), r#"{"enabled":false}"#),
        (Method::DELETE, format!("{PROTECTION}/p1"), ""),
    ];
    for (role, name) in [(Role::ServiceViewer, "viewer"), (Role::ImageUploader, "uploader")] {
        let creds = env.user(name, role, None).await;
        for (method, uri) in &reads {
            let a = env.call_as(&creds, method.clone(), uri, "").await;
            assert_eq!(a.status, StatusCode::OK, "{role:?} {method} {uri}: {}", a.text());
        }
        for (method, uri, body) in &changes {
            let a = env.call_as(&creds, method.clone(), uri, body).await;
            assert_eq!((a.status, a.code()), (StatusCode::FORBIDDEN, "DENIED".to_string()), "{role:?} {method} {uri}");
            assert!(a.detail().contains(role.as_str()), "{}", a.detail());
        }
    }
    // a project member manages them (in the order above: add, toggle, delete, set, remove, run…)
    let member = env.user("member", Role::ProjectMember, None).await;
    let want = [201, 200, 204, 200, 204, 202, 201, 200, 204];
    for ((method, uri, body), status) in changes.iter().zip(want) {
        let a = env.call_as(&member, method.clone(), uri, body).await;
        assert_eq!(a.status.as_u16(), status, "{method} {uri}: {}", a.text());
    }
    // a role limited to another registry may not even read team's policies
    let elsewhere = env.user("elsewhere", Role::ProjectAdmin, Some(vec!["other"])).await;
    for (method, uri) in &reads {
        let a = env.call_as(&elsewhere, method.clone(), uri, "").await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{method} {uri}");
    }
    let a = env.call_as(&elsewhere, Method::GET, "/api/v1/registries/other/cleanup/rules", "").await;
    assert_eq!(a.status, StatusCode::OK);

    // every change was audited under its route, reads were not
    let audit = env.call_json(Method::GET, "/api/v1/audit", "").await.json();
    let entries: Vec<(String, String, String)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["who"] == "member")
        .map(|e| {
            (
                e["action"].as_str().unwrap().into(),
                e["method"].as_str().unwrap().into(),
                e["target"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("api-cleanup-rules", "POST", RULES.to_string()),
        ("api-cleanup-rule", "PATCH", format!("{RULES}/c1")),
        ("api-cleanup-rule", "DELETE", format!("{RULES}/c1")),
        ("api-cleanup-schedule", "PUT", SCHEDULE.to_string()),
        ("api-cleanup-schedule", "DELETE", SCHEDULE.to_string()),
        ("api-cleanup-runs", "POST", RUNS.to_string()),
        ("api-protection-rules", "POST", PROTECTION.to_string()),
        ("api-protection-rule", "PATCH", format!("{PROTECTION}/p1")),
        ("api-protection-rule", "DELETE", format!("{PROTECTION}/p1")),
    ]
    .into_iter()
    .map(|(a, m, t)| (a.to_string(), m.to_string(), t))
    .collect();
    assert_eq!(entries, expected);
    // the runs started only to see who may start them are never worked
    let left: Vec<String> = env.discard_pending_jobs().await.into_iter().map(|j| j.kind).collect();
    assert_eq!(left, [berth::policy::cleanup::JOB; 2]);
}
