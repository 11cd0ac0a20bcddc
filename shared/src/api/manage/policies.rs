//! `/api/v1/registries/<registry>/cleanup…` and `…/protection…`: a registry's image cleanup rules,
//! cleanup cycle (cron schedule) and run history, and its image protection rules. The rules and
//! runs themselves live in [`crate::policy`]; this module reads requests and shapes answers.

use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use super::{invalid, object, page_request, page_response, read_json};
use crate::api::endpoint::{handler, Endpoint, Operation, Port, Rule};
use crate::api::query::{empty, Head, Query};
use crate::api::Route;
use crate::api::{ErrorCode, OciError};
use crate::app::App;
use crate::body::Response;
use crate::identity::registry;
use crate::identity::Action;
use crate::policy::{cleanup, protection};
use crate::storage::ByteStream;

/// `GET|POST /api/v1/registries/<registry>/cleanup/rules`.
pub const CLEANUP_RULES: Endpoint = Endpoint {
    name: "api-cleanup-rules",
    prefix: "/api/v1",
    suffix: "/registries/{registry}/cleanup/rules",
    has_repository: false,
    operations: &[
        Operation::read("GET", Rule::Role(Action::ViewCleanupPolicy), "List a registry's image cleanup rules"),
        Operation::change(
            "POST",
            Rule::Role(Action::ManageCleanupPolicy),
            "Add an image cleanup rule (at most 15)",
            201,
        )
        .body("NewCleanupRule"),
    ],
    ports: &[Port::MetadataWrite],
    handler: handler!("api-cleanup-rules", Route::ApiCleanupRules { registry } => |app, req, body| {
        cleanup_rules(app, &req, &registry, body).await
    }),
};

/// `PATCH|DELETE /api/v1/registries/<registry>/cleanup/rules/<rule>`.
pub const CLEANUP_RULE: Endpoint = Endpoint {
    name: "api-cleanup-rule",
    prefix: "/api/v1",
    suffix: "/registries/{registry}/cleanup/rules/{rule}",
    has_repository: false,
    operations: &[
        Operation::change(
            "PATCH",
            Rule::Role(Action::ToggleCleanupRule),
            "Enable or disable an image cleanup rule",
            200,
        )
        .body("ToggleRule"),
        Operation::change("DELETE", Rule::Role(Action::ManageCleanupPolicy), "Delete an image cleanup rule", 204),
    ],
    ports: &[Port::MetadataWrite],
    handler: handler!("api-cleanup-rule", Route::ApiCleanupRule { registry, rule } => |app, req, body| {
        cleanup_rule(app, &req, &registry, &rule, body).await
    }),
};

/// `GET|PUT|DELETE /api/v1/registries/<registry>/cleanup/schedule`.
pub const CLEANUP_SCHEDULE: Endpoint = Endpoint {
    name: "api-cleanup-schedule",
    prefix: "/api/v1",
    suffix: "/registries/{registry}/cleanup/schedule",
    has_repository: false,
    operations: &[
        Operation::read(
            "GET",
            Rule::Role(Action::ViewCleanupPolicy),
            "Show the cleanup cycle: cron (UTC) and next run",
        ),
        Operation::change(
            "PUT",
            Rule::Role(Action::ManageCleanupPolicy),
            "Set the cleanup cycle (five-field UTC cron)",
            200,
        )
        .body("SetSchedule"),
        Operation::change("DELETE", Rule::Role(Action::ManageCleanupPolicy), "Remove the cleanup cycle", 204),
    ],
    ports: &[Port::MetadataWrite],
    handler: handler!("api-cleanup-schedule", Route::ApiCleanupSchedule { registry } => |app, req, body| {
        cleanup_schedule(app, &req, &registry, body).await
    }),
};

/// `GET|POST /api/v1/registries/<registry>/cleanup/runs` (a started run is a queued job).
pub const CLEANUP_RUNS: Endpoint = Endpoint {
    name: "api-cleanup-runs",
    prefix: "/api/v1",
    suffix: "/registries/{registry}/cleanup/runs",
    has_repository: false,
    operations: &[
        Operation::read("GET", Rule::Role(Action::ViewCleanupHistory), "List cleanup runs, newest first").paged(),
        Operation::change(
            "POST",
            Rule::Role(Action::ManageCleanupPolicy),
            "Start a cleanup run (dry_run: a test run)",
            202,
        )
        .body("StartRun"),
    ],
    ports: &[Port::MetadataWrite, Port::JobsSend],
    handler: handler!("api-cleanup-runs", Route::ApiCleanupRuns { registry } => |app, req, body| {
        cleanup_runs(app, &req, &registry, body).await
    }),
};

/// `GET /api/v1/registries/<registry>/cleanup/runs/<run>`.
pub const CLEANUP_RUN: Endpoint = Endpoint {
    name: "api-cleanup-run",
    prefix: "/api/v1",
    suffix: "/registries/{registry}/cleanup/runs/{run}",
    has_repository: false,
    operations: &[Operation::read(
        "GET",
        Rule::Role(Action::ViewCleanupHistory),
        "Show a cleanup run with its decisions (chunk=K pages them)",
    )
    .query(&[("chunk", "first decision chunk to return (default 0); the answer's next_chunk is the next one")])],
    ports: &[],
    handler: handler!("api-cleanup-run", Route::ApiCleanupRun { registry, run } => |app, req, body| {
        cleanup_run(app, &req, &registry, &run).await
    }),
};

/// `GET|POST /api/v1/registries/<registry>/protection/rules`.
pub const PROTECTION_RULES: Endpoint = Endpoint {
    name: "api-protection-rules",
    prefix: "/api/v1",
    suffix: "/registries/{registry}/protection/rules",
    has_repository: false,
    operations: &[
        Operation::read("GET", Rule::Role(Action::ViewProtectionPolicy), "List a registry's image protection rules"),
        Operation::change(
            "POST",
            Rule::Role(Action::ManageProtectionPolicy),
            "Add an image protection rule (at most 15)",
            201,
        )
        .body("NewProtectionRule"),
    ],
    ports: &[Port::MetadataWrite],
    handler: handler!("api-protection-rules", Route::ApiProtectionRules { registry } => |app, req, body| {
        protection_rules(app, &req, &registry, body).await
    }),
};

/// `PATCH|DELETE /api/v1/registries/<registry>/protection/rules/<rule>`.
pub const PROTECTION_RULE: Endpoint = Endpoint {
    name: "api-protection-rule",
    prefix: "/api/v1",
    suffix: "/registries/{registry}/protection/rules/{rule}",
    has_repository: false,
    operations: &[
        Operation::change(
            "PATCH",
            Rule::Role(Action::ManageProtectionPolicy),
            "Enable or disable an image protection rule",
            200,
        )
        .body("ToggleRule"),
        Operation::change("DELETE", Rule::Role(Action::ManageProtectionPolicy), "Delete an image protection rule", 204),
    ],
    ports: &[Port::MetadataWrite],
    handler: handler!("api-protection-rule", Route::ApiProtectionRule { registry, rule } => |app, req, body| {
        protection_rule(app, &req, &registry, &rule, body).await
    }),
};

/// How many decision chunks `GET …/cleanup/runs/<run>` returns when `chunk` pages are not asked for.
pub const DECISION_CHUNKS: usize = 5;

/// The body of `PATCH …/rules/<rule>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Toggle {
    enabled: bool,
}

/// The body of `PUT …/cleanup/schedule`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetSchedule {
    cron: String,
}

/// The body of `POST …/cleanup/runs` (and of `POST /api/v1/gc/runs`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StartRun {
    #[serde(default)]
    pub(super) dry_run: bool,
}

/// The body of `POST …/protection/rules`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProtectionRule {
    image: String,
    tag: String,
}

/// Refuses a registry that does not exist (the guard only checks the caller's role).
async fn existing(app: &App, name: &str) -> Result<(), OciError> {
    match registry::get(app.meta.as_ref(), name).await? {
        Some(_) => Ok(()),
        None => Err(OciError::new(ErrorCode::NotFound, format!("registry {name:?} does not exist"))),
    }
}

/// `GET|POST …/cleanup/rules`: the registry's cleanup rules (one page: at most
/// [`cleanup::MAX_RULES`]), or a new rule (201).
pub async fn cleanup_rules(app: &App, head: &Head, name: &str, body: ByteStream) -> Result<Response, OciError> {
    existing(app, name).await?;
    if head.method == Method::GET {
        let rules = cleanup::rules(app.meta.as_ref(), name).await?;
        return page_response(head, &rules, false, |r| r.id.clone());
    }
    let new: cleanup::NewRule = read_json(body).await?;
    let rule = cleanup::add_rule(app.meta.as_ref(), name, &new, app.clock.now()).await?;
    object(StatusCode::CREATED, &rule)
}

/// `PATCH|DELETE …/cleanup/rules/<rule>`: enables or disables a rule, or deletes it (204).
pub async fn cleanup_rule(
    app: &App,
    head: &Head,
    name: &str,
    rule: &str,
    body: ByteStream,
) -> Result<Response, OciError> {
    existing(app, name).await?;
    if head.method == Method::PATCH {
        let change: Toggle = read_json(body).await?;
        let rule = cleanup::set_enabled(app.meta.as_ref(), name, rule, change.enabled).await?;
        return object(StatusCode::OK, &rule);
    }
    cleanup::remove_rule(app.meta.as_ref(), name, rule).await?;
    empty(StatusCode::NO_CONTENT, &[])
}

/// `GET|PUT|DELETE …/cleanup/schedule`: the cleanup cycle (`{"cron", "next_run_at"}`), set from a
/// five-field UTC cron expression, or removed (204).
pub async fn cleanup_schedule(app: &App, head: &Head, name: &str, body: ByteStream) -> Result<Response, OciError> {
    existing(app, name).await?;
    let meta = app.meta.as_ref();
    match head.method {
        Method::GET => object(StatusCode::OK, &cleanup::cycle(meta, name).await?),
        Method::PUT => {
            let req: SetSchedule = read_json(body).await?;
            object(StatusCode::OK, &cleanup::set_cycle(meta, name, Some(&req.cron), app.clock.now()).await?)
        }
        _ => {
            cleanup::set_cycle(meta, name, None, app.clock.now()).await?;
            empty(StatusCode::NO_CONTENT, &[])
        }
    }
}

/// `GET|POST …/cleanup/runs`: the run history, newest first (paged by run id), or a test run
/// (`{"dry_run": true}`) or real run started now (202, status `queued`).
pub async fn cleanup_runs(app: &App, head: &Head, name: &str, body: ByteStream) -> Result<Response, OciError> {
    existing(app, name).await?;
    if head.method == Method::GET {
        let page = page_request(head)?;
        let (runs, more) = cleanup::runs(app.meta.as_ref(), name, page.after.as_deref(), page.limit).await?;
        return page_response(head, &runs, more, |r| r.id.clone());
    }
    let req: StartRun = read_json(body).await?;
    let run = cleanup::start(app, name, req.dry_run).await?;
    object(StatusCode::ACCEPTED, &run)
}

/// `GET …/cleanup/runs/<run>[?chunk=K]`: the run with its decisions from chunk `K` (default 0),
/// [`DECISION_CHUNKS`] chunks at most; `next_chunk` says where the rest starts (null: no more).
pub async fn cleanup_run(app: &App, head: &Head, name: &str, id: &str) -> Result<Response, OciError> {
    existing(app, name).await?;
    let from = match Query::of(head).get("chunk") {
        None | Some("") => 0,
        Some(k) => k.parse::<u64>().map_err(|_| invalid(format!("chunk={k} is not a chunk number")))?,
    };
    let meta = app.meta.as_ref();
    let run = cleanup::run(meta, name, id).await?;
    let (decisions, next) = cleanup::decisions(meta, name, id, from, DECISION_CHUNKS).await?;
    let mut view = serde_json::to_value(&run).map_err(|e| OciError::internal(&e))?;
    if let Value::Object(map) = &mut view {
        map.insert("decisions".to_string(), serde_json::to_value(&decisions).map_err(|e| OciError::internal(&e))?);
        map.insert("next_chunk".to_string(), next.map_or(Value::Null, Value::from));
    }
    object(StatusCode::OK, &view)
}

/// `GET|POST …/protection/rules`: the registry's protection rules, or a new rule (201).
pub async fn protection_rules(app: &App, head: &Head, name: &str, body: ByteStream) -> Result<Response, OciError> {
    existing(app, name).await?;
    if head.method == Method::GET {
        let rules = protection::list(app.meta.as_ref(), name).await?;
        return page_response(head, &rules, false, |r| r.id.clone());
    }
    let new: NewProtectionRule = read_json(body).await?;
    let rule = protection::add(app.meta.as_ref(), name, &new.image, &new.tag, app.clock.now()).await?;
    object(StatusCode::CREATED, &rule)
}

/// `PATCH|DELETE …/protection/rules/<rule>`: enables or disables a rule, or deletes it (204).
pub async fn protection_rule(
    app: &App,
    head: &Head,
    name: &str,
    rule: &str,
    body: ByteStream,
) -> Result<Response, OciError> {
    existing(app, name).await?;
    if head.method == Method::PATCH {
        let change: Toggle = read_json(body).await?;
        let rule = protection::set_enabled(app.meta.as_ref(), name, rule, change.enabled).await?;
        return object(StatusCode::OK, &rule);
    }
    protection::remove(app.meta.as_ref(), name, rule).await?;
    empty(StatusCode::NO_CONTENT, &[])
}
