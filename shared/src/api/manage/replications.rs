//! `/api/v1/registries/<registry>/replication-targets…` and `…/replications…`: a registry's
//! replication targets (`_all`: shared ones) and policies, manual runs and the history of
//! executions and tasks. The logic lives in [`crate::replication`]; this module reads requests and
//! shapes answers.

use http::{Method, StatusCode};

use super::{grants, object, page_request, page_response, read_json};
use crate::api::endpoint::{handler, Endpoint, Operation, Port, Rule};
use crate::api::query::{empty, Head};
use crate::api::OciError;
use crate::api::Route;
use crate::app::App;
use crate::body::Response;
use crate::identity::Action;
use crate::replication::{history, policy, run, target};
use crate::storage::ByteStream;

/// `GET|POST /api/v1/registries/<registry>/replication-targets`.
pub const TARGETS: Endpoint = Endpoint {
    name: "api-replication-targets",
    prefix: "/api/v1",
    suffix: "/registries/{registry}/replication-targets",
    has_repository: false,
    operations: &[
        Operation::read(
            "GET",
            Rule::Role(Action::ViewReplications),
            "List a registry's replication targets (`_all`: the shared ones)",
        )
        .paged(),
        Operation::change(
            "POST",
            Rule::Role(Action::ManageReplications),
            "Add a replication target (another Berth or any OCI registry); its password is stored encrypted",
            201,
        )
        .body("NewReplicationTarget"),
    ],
    ports: &[Port::MetadataWrite],
    handler: handler!("api-replication-targets", Route::ApiReplicationTargets { registry } => |app, req, body| {
        targets(app, &req, &registry, body).await
    }),
};

/// `GET|PATCH|DELETE /api/v1/registries/<registry>/replication-targets/<target>`.
pub const TARGET: Endpoint = Endpoint {
    name: "api-replication-target",
    prefix: "/api/v1",
    suffix: "/registries/{registry}/replication-targets/{target}",
    has_repository: false,
    operations: &[
        Operation::read("GET", Rule::Role(Action::ViewReplications), "Show a replication target (never its password)"),
        Operation::change("PATCH", Rule::Role(Action::ManageReplications), "Change a replication target", 200)
            .body("ReplicationTargetPatch"),
        Operation::change(
            "DELETE",
            Rule::Role(Action::ManageReplications),
            "Delete a replication target no replication uses",
            204,
        ),
    ],
    ports: &[Port::MetadataWrite],
    handler: handler!("api-replication-target", Route::ApiReplicationTarget { registry, target: id } => |app, req, body| {
        one_target(app, &req, &registry, &id, body).await
    }),
};

/// `GET|POST /api/v1/registries/<registry>/replications`.
pub const REPLICATIONS: Endpoint = Endpoint {
    name: "api-replications",
    prefix: "/api/v1",
    suffix: "/registries/{registry}/replications",
    has_repository: false,
    operations: &[
        Operation::read("GET", Rule::Role(Action::ViewReplications), "List a registry's replications").paged(),
        Operation::change(
            "POST",
            Rule::Role(Action::ManageReplications),
            "Create a replication; it is Disabled until its target answers",
            201,
        )
        .body("NewReplication"),
    ],
    ports: &[Port::MetadataWrite, Port::JobsSend],
    handler: handler!("api-replications", Route::ApiReplications { registry } => |app, req, body| {
        replications(app, &req, &registry, body).await
    }),
};

/// `GET|PATCH|DELETE /api/v1/registries/<registry>/replications/<replication>`.
pub const REPLICATION: Endpoint = Endpoint {
    name: "api-replication",
    prefix: "/api/v1",
    suffix: "/registries/{registry}/replications/{replication}",
    has_repository: false,
    operations: &[
        Operation::read("GET", Rule::Role(Action::ViewReplications), "Show a replication and its status"),
        Operation::change(
            "PATCH",
            Rule::Role(Action::ManageReplications),
            "Change, enable or disable a replication",
            200,
        )
        .body("ReplicationPatch"),
        Operation::change(
            "DELETE",
            Rule::Role(Action::ManageReplications),
            "Delete a replication, its schedule and history",
            204,
        ),
    ],
    ports: &[Port::MetadataWrite, Port::JobsSend],
    handler: handler!("api-replication", Route::ApiReplication { registry, replication } => |app, req, body| {
        one_replication(app, &req, &registry, &replication, body).await
    }),
};

/// `POST /api/v1/registries/<registry>/replications/<replication>/run`.
pub const REPLICATION_RUN: Endpoint = Endpoint {
    name: "api-replication-run",
    prefix: "/api/v1",
    suffix: "/registries/{registry}/replications/{replication}/run",
    has_repository: false,
    operations: &[Operation::change(
        "POST",
        Rule::Role(Action::ManageReplications),
        "Run a replication now (\"Run Replication\"); answers with the new execution",
        202,
    )],
    ports: &[Port::MetadataWrite, Port::JobsSend],
    handler: handler!("api-replication-run", Route::ApiReplicationRun { registry, replication } => |app, req, body| {
        let _ = (req, body);
        let execution = run::start_manual(app, &registry, &replication).await?;
        object(StatusCode::ACCEPTED, &execution)
    }),
};

/// `GET /api/v1/registries/<registry>/replications/<replication>/executions`.
pub const EXECUTIONS: Endpoint = Endpoint {
    name: "api-replication-executions",
    prefix: "/api/v1",
    suffix: "/registries/{registry}/replications/{replication}/executions",
    has_repository: false,
    operations: &[Operation::read(
        "GET",
        Rule::Role(Action::ViewReplicationHistory),
        "A replication's executions, newest first",
    )
    .paged()],
    ports: &[],
    handler: handler!("api-replication-executions", Route::ApiReplicationExecutions { registry, replication } => |app, req, body| {
        let _ = body;
        policy::get(app, &registry, &replication).await?;
        let page = page_request(&req)?;
        let (items, more) = history::executions(app, &registry, &replication, page.after.as_deref(), page.limit).await?;
        page_response(&req, &items, more, |e| e.id.clone())
    }),
};

/// `GET /api/v1/registries/<registry>/replications/<replication>/executions/<execution>`.
pub const EXECUTION: Endpoint = Endpoint {
    name: "api-replication-execution",
    prefix: "/api/v1",
    suffix: "/registries/{registry}/replications/{replication}/executions/{execution}",
    has_repository: false,
    operations: &[Operation::read("GET", Rule::Role(Action::ViewReplicationHistory), "One execution and its counts")],
    ports: &[],
    handler: handler!("api-replication-execution", Route::ApiReplicationExecution { registry, replication, execution } => |app, req, body| {
        let _ = (req, body);
        let found = history::execution(app, &registry, &replication, &execution).await?;
        object(StatusCode::OK, &found)
    }),
};

/// `GET /api/v1/registries/<registry>/replications/<replication>/executions/<execution>/tasks`.
pub const TASKS: Endpoint = Endpoint {
    name: "api-replication-tasks",
    prefix: "/api/v1",
    suffix: "/registries/{registry}/replications/{replication}/executions/{execution}/tasks",
    has_repository: false,
    operations: &[Operation::read(
        "GET",
        Rule::Role(Action::ViewReplicationHistory),
        "An execution's tasks (one per artifact), in order",
    )
    .paged()],
    ports: &[],
    handler: handler!("api-replication-tasks", Route::ApiReplicationTasks { registry, replication, execution } => |app, req, body| {
        let _ = body;
        history::execution(app, &registry, &replication, &execution).await?;
        let page = page_request(&req)?;
        let (items, more) =
            history::tasks(app, &registry, &replication, &execution, page.after.as_deref(), page.limit).await?;
        // a paused task's upload location may carry the target's session token: never shown
        let views: Vec<history::TaskView> = items.iter().map(history::TaskRecord::view).collect();
        page_response(&req, &views, more, |t| t.id.clone())
    }),
};

/// `GET|POST …/replication-targets`.
pub async fn targets(app: &App, head: &Head, scope: &str, body: ByteStream) -> Result<Response, OciError> {
    if head.method == Method::GET {
        target::check_scope(app, scope).await?;
        let page = page_request(head)?;
        let (items, more) = target::list(app, scope, page.after.as_deref(), page.limit).await?;
        let views: Vec<_> = items.iter().map(target::StoredTarget::view).collect();
        return page_response(head, &views, more, |t| t.id.clone());
    }
    let new: target::NewTarget = read_json(body).await?;
    let by = grants(head)?.principal().to_string();
    object(StatusCode::CREATED, &target::create(app, scope, new, &by).await?)
}

/// `GET|PATCH|DELETE …/replication-targets/<target>`.
pub async fn one_target(app: &App, head: &Head, scope: &str, id: &str, body: ByteStream) -> Result<Response, OciError> {
    match head.method {
        Method::GET => object(StatusCode::OK, &target::get(app, scope, id).await?.0.view()),
        Method::PATCH => {
            let patch: target::TargetPatch = read_json(body).await?;
            object(StatusCode::OK, &target::update(app, scope, id, patch).await?)
        }
        _ => {
            target::delete(app, scope, id).await?;
            empty(StatusCode::NO_CONTENT, &[])
        }
    }
}

/// `GET|POST …/replications`.
pub async fn replications(app: &App, head: &Head, registry: &str, body: ByteStream) -> Result<Response, OciError> {
    if head.method == Method::GET {
        target::check_scope(app, registry).await?;
        let page = page_request(head)?;
        let (items, more) = policy::list(app, registry, page.after.as_deref(), page.limit).await?;
        let views: Vec<_> = items.iter().map(policy::StoredPolicy::view).collect();
        return page_response(head, &views, more, |p| p.id.clone());
    }
    let new: policy::NewPolicy = read_json(body).await?;
    let grants = grants(head)?;
    let by = grants.principal().to_string();
    let over_all = over_every_registry(app, grants).await?;
    object(StatusCode::CREATED, &policy::create(app, registry, new, &by, over_all).await?)
}

/// `GET|PATCH|DELETE …/replications/<replication>`.
pub async fn one_replication(
    app: &App,
    head: &Head,
    registry: &str,
    id: &str,
    body: ByteStream,
) -> Result<Response, OciError> {
    match head.method {
        Method::GET => object(StatusCode::OK, &policy::get(app, registry, id).await?.0.view()),
        Method::PATCH => {
            let patch: policy::PolicyPatch = read_json(body).await?;
            let over_all = over_every_registry(app, grants(head)?).await?;
            object(StatusCode::OK, &policy::update(app, registry, id, patch, over_all).await?)
        }
        _ => {
            policy::delete(app, registry, id).await?;
            empty(StatusCode::NO_CONTENT, &[])
        }
    }
}

/// Whether the principal's role covers every registry (what a shared target asks for): the
/// user of Basic credentials, or the user a management token was issued to, as stored now.
async fn over_every_registry(app: &App, grants: &crate::access::Grants) -> Result<bool, OciError> {
    match grants {
        crate::access::Grants::User(user) => Ok(user.registries.is_none()),
        crate::access::Grants::Token(claims) => {
            let user = crate::identity::user::get(app.meta.as_ref(), &claims.sub).await?;
            Ok(user.is_some_and(|u| u.registries.is_none()))
        }
    }
}
