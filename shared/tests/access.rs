//! The NCR permission matrix, enforced at the edge: every role against every action that has a
//! route today, on the registry API and the management API alike, with Basic access-key
//! credentials and with scoped Bearer tokens; plus token scope, expiry and revocation.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use berth::identity::{key, Action, Role};
use berth::oci::Digest;
use common::registry::{basic, Answer, Creds, TestRegistry};
use http::{Method, StatusCode};
use serde_json::json;

/// A registry whose clock stands at 2027-01-15T08:00:00Z.
fn registry() -> TestRegistry {
    TestRegistry::embedded().with_clock(1_800_000_000)
}

/// A request exercising one action of the guide's table; `n` makes names unique per attempt.
async fn attempt(env: &TestRegistry, auth: &Creds, action: Action, n: usize, bearer: bool) -> Option<Answer> {
    let repo = format!("team/app{n}");
    let digest = env.push_image(&repo, "v1").await;
    let (method, uri, body, scope): (Method, String, String, Option<String>) = match action {
        Action::ViewRegistries => (Method::GET, "/api/v1/registries/team".into(), String::new(), None),
        Action::ManageRegistries => {
            (Method::POST, "/api/v1/registries".into(), format!("{{\"name\":\"made{n}\"}}"), None)
        }
        Action::ViewImages => (Method::GET, "/api/v1/registries/team/images".into(), String::new(), None),
        Action::PullImages => {
            (Method::GET, format!("/v2/{repo}/manifests/v1"), String::new(), Some(format!("repository:{repo}:pull")))
        }
        Action::PushImages => {
            let blob = format!("pushed {n}");
            let uri = format!("/v2/{repo}/blobs/uploads/?digest={}", Digest::sha256_of(blob.as_bytes()));
            (Method::POST, uri, blob, Some(format!("repository:{repo}:pull,push")))
        }
        Action::DeleteImages => (Method::DELETE, format!("/api/v1/images/{repo}"), String::new(), None),
        Action::ViewArtifacts => (Method::GET, format!("/api/v1/images/{repo}/artifacts"), String::new(), None),
        Action::DeleteArtifacts => (
            Method::DELETE,
            format!("/v2/{repo}/manifests/{digest}"),
            String::new(),
            Some(format!("repository:{repo}:delete")),
        ),
        Action::ViewTags => {
            (Method::GET, format!("/v2/{repo}/tags/list"), String::new(), Some(format!("repository:{repo}:pull,push")))
        }
        Action::ManageTags => {
            (Method::PUT, format!("/api/v1/images/{repo}/tags/t{n}"), format!("{{\"digest\":\"{digest}\"}}"), None)
        }
        Action::ViewCleanupPolicy => (Method::GET, "/api/v1/registries/team/cleanup/rules".into(), String::new(), None),
        Action::ViewCleanupHistory => (Method::GET, "/api/v1/registries/team/cleanup/runs".into(), String::new(), None),
        Action::ManageCleanupPolicy => (
            Method::POST,
            "/api/v1/registries/team/cleanup/rules".into(),
            format!("{{\"image\":\"m{n}\",\"tag\":\"**\",\"keep\":\"always\"}}"),
            None,
        ),
        // a management route: no token scope covers it, so only Basic keys try it (and only they
        // add the rule to toggle, keeping the registry under its 15 rules)
        Action::ToggleCleanupRule if !bearer => {
            let new =
                serde_json::from_value(json!({ "image": format!("t{n}"), "tag": "**", "keep": "always" })).unwrap();
            let rule = berth::policy::cleanup::add_rule(env.app.meta.as_ref(), "team", &new, 0).await.unwrap();
            let uri = format!("/api/v1/registries/team/cleanup/rules/{}", rule.id);
            (Method::PATCH, uri, "{\"enabled\":false}".to_string(), None)
        }
        Action::ViewProtectionPolicy => {
            (Method::GET, "/api/v1/registries/team/protection/rules".into(), String::new(), None)
        }
        Action::ManageProtectionPolicy => (
            Method::POST,
            "/api/v1/registries/team/protection/rules".into(),
            format!("{{\"image\":\"m{n}\",\"tag\":\"v*\"}}"),
            None,
        ),
        // Replication and webhooks have no routes yet.
        _ => return None,
    };
    if bearer {
        let scope = scope?;
        let token = env.token(auth, &scope).await;
        Some(env.call_bearer(&token, method, &uri, &body).await)
    } else {
        Some(env.call_as(auth, method, &uri, &body).await)
    }
}

#[tokio::test]
async fn every_role_against_every_routed_action_on_both_apis() {
    let env = registry();
    let mut users = vec![];
    for role in Role::ALL {
        users.push((role, env.user(&format!("u-{}", role.as_str()), role, None).await));
    }
    let mut n = 0;
    let mut checked = 0;
    for (role, creds) in &users {
        for action in Action::ALL {
            for bearer in [false, true] {
                n += 1;
                let Some(a) = attempt(&env, creds, action, n, bearer).await else { continue };
                checked += 1;
                let body = String::from_utf8_lossy(&a.body).to_string();
                if role.allows(action) {
                    assert!(a.status.is_success(), "{role:?} {action:?} bearer={bearer}: {} {body}", a.status);
                } else {
                    assert_eq!(a.status, StatusCode::FORBIDDEN, "{role:?} {action:?} bearer={bearer}: {body}");
                    assert_eq!(a.code(), "DENIED", "{body}");
                    if !bearer {
                        assert!(body.contains(role.as_str()) || body.contains("may not"), "{body}");
                    }
                }
            }
        }
    }
    // 16 routed actions x 5 roles with Basic keys; the 4 registry-API ones with tokens too
    assert_eq!(checked, 5 * (16 + 4));
    env.work().await; // the usage refreshes its pushes queued
}

#[tokio::test]
async fn registry_lists_limit_roles_to_their_registries() {
    let env = registry();
    let scoped = env.user("scoped", Role::ProjectAdmin, Some(vec!["team"])).await;
    env.push_image("other/app", "v1").await;
    env.push_image("team/app", "v1").await;
    let a = env.call_as(&scoped, Method::GET, "/v2/other/app/manifests/v1", "").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = env.call_as(&scoped, Method::GET, "/v2/team/app/manifests/v1", "").await;
    assert_eq!(a.status, StatusCode::OK);
    let a = env.call_as(&scoped, Method::GET, "/api/v1/registries", "").await;
    let listed = a.json();
    let names: Vec<&str> = listed["items"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["team"]);
    // not an administrator of every registry: no users, no audit log, no catalog
    for uri in ["/api/v1/users", "/api/v1/audit", "/v2/_catalog"] {
        let a = env.call_as(&scoped, Method::GET, uri, "").await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{uri}");
    }
    let t = env.token(&scoped, "repository:other/app:pull repository:team/app:pull").await;
    let a = env.call_bearer(&t, Method::GET, "/v2/other/app/manifests/v1", "").await;
    assert_eq!((a.status, a.code()), (StatusCode::FORBIDDEN, "DENIED".to_string()));
    assert!(!a.headers.contains_key("www-authenticate"), "a refused scope is final: no challenge");
    env.work().await; // the usage refreshes its pushes queued
}

#[tokio::test]
async fn tokens_expire_and_revoked_keys_get_no_new_ones() {
    let env = registry();
    let creds = env.user("viewer", Role::ServiceViewer, None).await;
    env.push_image("team/app", "v1").await;
    let t = env.token(&creds, "repository:team/app:pull").await;
    let a = env.call_bearer(&t, Method::GET, "/v2/team/app/manifests/v1", "").await;
    assert_eq!(a.status, StatusCode::OK);
    env.advance(3600 + 6);
    let a = env.call_bearer(&t, Method::GET, "/v2/team/app/manifests/v1", "").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.headers["www-authenticate"].to_str().unwrap().contains("error=\"invalid_token\""));
    key::revoke(env.app.meta.as_ref(), "viewer", &creds.0).await.unwrap();
    let a = env.call_as(&creds, Method::GET, "/auth/token?service=berth", "").await;
    assert_eq!((a.status, a.code()), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED".to_string()));
    env.work().await; // the usage refreshes its pushes queued
}

#[tokio::test]
async fn management_routes_refuse_bad_input_and_change_nothing() {
    let env = registry();
    let admin = env.admin();
    let zero_artifact = format!("/api/v1/images/team/none/artifacts/sha256:{}", "0".repeat(64));
    let cases: Vec<(Method, &str, &str, StatusCode, &str)> = vec![
        (Method::POST, "/api/v1/registries", "{\"name\":\"Bad Name\"}", StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
        (Method::POST, "/api/v1/registries", "{\"name\":\"team\"}", StatusCode::CONFLICT, "ALREADY_EXISTS"),
        (Method::POST, "/api/v1/registries", "{\"nam\":\"x\"}", StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
        (Method::POST, "/api/v1/registries", "not json", StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
        (
            Method::POST,
            "/api/v1/registries",
            "{\"name\":\"n\",\"private_networks\":[\"10.0.0.0/33\"]}",
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        ),
        (Method::PATCH, "/api/v1/registries/team", "{}", StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
        (Method::PATCH, "/api/v1/registries/nope", "{\"public_access\":false}", StatusCode::NOT_FOUND, "NOT_FOUND"),
        (Method::DELETE, "/api/v1/registries/nope", "", StatusCode::NOT_FOUND, "NOT_FOUND"),
        (
            Method::POST,
            "/api/v1/users",
            "{\"name\":\"x\",\"role\":\"root\"}",
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        ),
        (
            Method::POST,
            "/api/v1/users",
            "{\"name\":\"x y\",\"role\":\"service-viewer\"}",
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        ),
        (
            Method::POST,
            "/api/v1/users",
            "{\"name\":\"x\",\"role\":\"service-viewer\",\"registries\":[]}",
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        ),
        (
            Method::POST,
            "/api/v1/users",
            "{\"name\":\"admin\",\"role\":\"service-viewer\"}",
            StatusCode::CONFLICT,
            "ALREADY_EXISTS",
        ),
        (Method::DELETE, "/api/v1/users/admin", "", StatusCode::CONFLICT, "CONFLICT"),
        (Method::POST, "/api/v1/users/nobody/keys", "", StatusCode::NOT_FOUND, "NOT_FOUND"),
        (Method::DELETE, "/api/v1/users/admin/keys/BKNOSUCHKEY", "", StatusCode::NOT_FOUND, "NOT_FOUND"),
        (Method::GET, "/api/v1/registries?n=0", "", StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
        (Method::GET, "/api/v1/images/team/none/artifacts", "", StatusCode::NOT_FOUND, "NOT_FOUND"),
        (
            Method::PUT,
            "/api/v1/images/team/none/tags/v1",
            "{\"digest\":\"sha256:00\"}",
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        ),
        (Method::GET, "/api/v1/nothing", "", StatusCode::NOT_FOUND, "NOT_FOUND"),
        (Method::GET, "/api/v1/registries/nope/images", "", StatusCode::NOT_FOUND, "NOT_FOUND"),
        (Method::DELETE, "/api/v1/images/team/none", "", StatusCode::NOT_FOUND, "NOT_FOUND"),
        (Method::GET, &zero_artifact, "", StatusCode::NOT_FOUND, "NOT_FOUND"),
        (Method::GET, "/api/v1/images/team/none/artifacts/sha256:zz", "", StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
        (Method::GET, "/api/v1/images/team/none/tags", "", StatusCode::NOT_FOUND, "NOT_FOUND"),
        (Method::DELETE, "/api/v1/images/team/none/tags/v1", "", StatusCode::NOT_FOUND, "NOT_FOUND"),
        (Method::PUT, "/api/v1/images/team/none/tags/-bad", "{}", StatusCode::BAD_REQUEST, "TAG_INVALID"),
        (Method::PATCH, "/api/v1/users/admin", "{\"role\":\"god\"}", StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
        (Method::PATCH, "/api/v1/users/nobody", "{\"role\":\"service-viewer\"}", StatusCode::NOT_FOUND, "NOT_FOUND"),
        (
            Method::POST,
            "/api/v1/users",
            "{\"name\":\"x\",\"role\":\"service-viewer\",\"registries\":[\"nope\"]}",
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        ),
        (Method::GET, "/api/v1/users/nobody/keys", "", StatusCode::NOT_FOUND, "NOT_FOUND"),
        (Method::POST, "/api/v1/users/admin/keys/BKNOPE/rotate", "", StatusCode::NOT_FOUND, "NOT_FOUND"),
        (Method::GET, "/api/v1/audit?n=abc", "", StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
        (Method::PUT, "/api/v1/registries", "{}", StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
    ];
    let before_users = env.call_as(&admin, Method::GET, "/api/v1/users", "").await.body;
    let before_regs = env.call_as(&admin, Method::GET, "/api/v1/registries", "").await.body;
    for (method, uri, body, status, code) in cases {
        let a = env.call_as(&admin, method.clone(), uri, body).await;
        assert_eq!(
            (a.status, a.code()),
            (status, code.to_string()),
            "{method} {uri} {body}: {}",
            String::from_utf8_lossy(&a.body)
        );
        let detail = a.json()["errors"][0]["detail"].as_str().unwrap_or("").to_string();
        assert!(!detail.is_empty(), "{method} {uri}: an error needs a detail");
    }
    assert_eq!(env.call_as(&admin, Method::GET, "/api/v1/users", "").await.body, before_users);
    assert_eq!(env.call_as(&admin, Method::GET, "/api/v1/registries", "").await.body, before_regs);
}

#[tokio::test]
async fn changes_are_audited_with_who_what_and_where() {
    let env = registry();
    let admin = env.admin();
    env.push_image("team/app", "v1").await;
    let a = env.call_as(&admin, Method::POST, "/api/v1/registries", "{\"name\":\"audited\"}").await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = env.call_as(&admin, Method::DELETE, "/api/v1/registries/audited", "").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = env.call_as(&admin, Method::GET, "/api/v1/audit", "").await;
    let entries = a.json()["items"].as_array().unwrap().clone();
    let actions: Vec<(String, String)> = entries
        .iter()
        .map(|e| (e["action"].as_str().unwrap().to_string(), e["method"].as_str().unwrap().to_string()))
        .collect();
    assert!(actions.contains(&("manifest-put".into(), "PUT".into())), "{actions:?}");
    assert!(actions.contains(&("api-registries".into(), "POST".into())), "{actions:?}");
    assert!(actions.contains(&("api-registry".into(), "DELETE".into())), "{actions:?}");
    assert!(entries.iter().all(|e| e["who"] == "admin" && e["at"].as_i64().unwrap() > 0));
    assert!(!actions.iter().any(|(a, _)| a.starts_with("upload-")), "upload traffic is not an audited change");
    env.work().await; // the usage refreshes its pushes queued
}

#[tokio::test]
async fn deleting_an_artifact_takes_its_referrers_and_is_refused_while_an_index_lists_it() {
    let env = registry();
    let admin = env.admin();
    let image = env.push_image("team/app", "v1").await;
    // a signature-like referrer of the image
    let ed = env.push_blob("team/app", b"{}").await;
    let referrer = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.signature",
        "config": { "mediaType": "application/vnd.oci.empty.v1+json", "digest": ed.to_string(), "size": 2 },
        "layers": [{ "mediaType": "application/vnd.oci.empty.v1+json", "digest": ed.to_string(), "size": 2 }],
        "subject": { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": image.to_string(), "size": 1 }
    }))
    .unwrap();
    let rd = Digest::sha256_of(&referrer);
    let media_type = "application/vnd.oci.image.manifest.v1+json";
    assert_eq!(env.push_manifest("team/app", &rd.to_string(), media_type, &referrer).await.status, StatusCode::CREATED);
    let shown = env.call_as(&admin, Method::GET, &format!("/api/v1/images/team/app/artifacts/{image}"), "").await;
    assert_eq!(shown.json()["referrers"][0]["digest"], rd.to_string());
    assert_eq!(shown.json()["tags"], json!(["v1"]));
    assert_eq!(shown.json()["platforms"], json!([{ "os": "linux", "architecture": "amd64" }]));

    // an index listing the image: deleting the image is refused until the index goes
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{ "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": image.to_string(), "size": 1,
                        "platform": { "os": "linux", "architecture": "amd64" } }]
    }))
    .unwrap();
    let id = Digest::sha256_of(&index);
    let media_type = "application/vnd.oci.image.index.v1+json";
    assert_eq!(env.push_manifest("team/app", "multi", media_type, &index).await.status, StatusCode::CREATED);
    let a = env.call_as(&admin, Method::DELETE, &format!("/api/v1/images/team/app/artifacts/{image}"), "").await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::CONFLICT, "CONFLICT".to_string()),
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    assert!(String::from_utf8_lossy(&a.body).contains(&id.to_string()));
    let a = env.call_as(&admin, Method::GET, &format!("/v2/team/app/manifests/{rd}"), "").await;
    assert_eq!(a.status, StatusCode::OK, "a refused delete keeps the referrers too");

    let a = env.call_as(&admin, Method::DELETE, &format!("/api/v1/images/team/app/artifacts/{id}"), "").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = env.call_as(&admin, Method::DELETE, &format!("/api/v1/images/team/app/artifacts/{image}"), "").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    for d in [image, rd] {
        let a = env.call_as(&admin, Method::GET, &format!("/v2/team/app/manifests/{d}"), "").await;
        assert_eq!((a.status, a.code()), (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".to_string()));
    }
    env.work().await; // the usage refreshes its pushes queued
}

#[tokio::test]
async fn the_password_grant_form_issues_the_same_scoped_token() {
    let env = registry();
    env.push_image("team/app", "v1").await;
    let (admin_key, admin_secret) = env.admin();
    let form = format!(
        "grant_type=password&service=berth&username={admin_key}&password={admin_secret}&scope=repository%3Ateam%2Fapp%3Apull"
    );
    let none = basic(&("".to_string(), "".to_string()));
    let form_headers = [("authorization", none.as_str()), ("content-type", "application/x-www-form-urlencoded")];
    let a = env.call(Method::POST, "/auth/token", &form_headers, form.into_bytes()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", String::from_utf8_lossy(&a.body));
    let token = a.json()["access_token"].as_str().unwrap().to_string();
    let got = env.call_bearer(&token, Method::GET, "/v2/team/app/manifests/v1", "").await;
    assert_eq!(got.status, StatusCode::OK);
    let denied = env.call_bearer(&token, Method::POST, "/v2/team/app/blobs/uploads/", "").await;
    assert_eq!((denied.status, denied.code()), (StatusCode::FORBIDDEN, "DENIED".to_string()));
    // a form past 16 KiB is refused without reading further
    let huge = format!("grant_type=password&scope={}", "x".repeat(17 * 1024));
    let a = env.call(Method::POST, "/auth/token", &form_headers, huge.into_bytes()).await;
    assert_eq!((a.status, a.code()), (StatusCode::BAD_REQUEST, "INVALID_REQUEST".to_string()));
    env.work().await; // the usage refreshes its pushes queued
}

#[tokio::test]
async fn a_key_record_its_user_does_not_list_grants_nothing() {
    // what a function that may write key records (before: every function's edge) could forge: a
    // key for the admin with a secret of its choosing, or the admin's own key with a new secret
    let env = registry();
    env.ready().await;
    let meta = env.app.meta.as_ref();
    let secret = "forged-secret-of-the-attacker-0001";
    let hash = berth::auth::secret::hash_secret(secret).unwrap();
    let forged = key::AccessKey {
        id: "BKFORGED000000000001".to_string(),
        user: "admin".to_string(),
        secret_hash: hash.clone(),
        created_at: 0,
        rotated_at: None,
        generation: 0,
        last_used_at: None,
    };
    key::KEYS.put(meta, &forged.id, &forged, berth::metadata::Expect::Absent).await.unwrap();
    let creds = (forged.id.clone(), secret.to_string());
    let a = env.call_as(&creds, Method::GET, "/api/v1/users", "").await;
    assert_eq!((a.status, a.code()), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED".to_string()));
    let a = env.call_as(&creds, Method::GET, "/auth/token?service=berth&scope=registry:management:*", "").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    // the admin's real key still works, and its use is stamped apart from the key record
    let a = env.call_as(&env.admin(), Method::GET, "/api/v1/users/admin/keys", "").await;
    assert_eq!(a.status, StatusCode::OK);
    let listed = a.json()["items"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["last_used_at"], json!(env.now()));
    let stored = meta.get_document("key", &env.admin().0).await.unwrap().unwrap();
    assert!(stored.body.get("last_used_at").is_none(), "{}", stored.body);
    assert!(meta.get_document(key::USE_COLLECTION, &env.admin().0).await.unwrap().is_some());
}
