//! `/api/v1/registries/<registry>/webhooks…`: a registry's webhook policies (`_all`: the
//! registry-wide ones), their test ping, delivery log and redelivery. The policies and deliveries
//! live in [`crate::webhook`]; this module reads requests and shapes answers.

use http::{Method, StatusCode};
use serde_json::json;

use super::{grants, object, page_request, page_response, read_json};
use crate::api::endpoint::{handler, Endpoint, Operation, Port, Rule};
use crate::api::query::{empty, Head};
use crate::api::OciError;
use crate::api::Route;
use crate::app::App;
use crate::body::Response;
use crate::identity::Action;
use crate::storage::ByteStream;
use crate::webhook::{delivery, policy};

/// `GET|POST /api/v1/registries/<registry>/webhooks`.
pub const WEBHOOKS: Endpoint = Endpoint {
    name: "api-webhooks",
    prefix: "/api/v1",
    suffix: "/registries/{registry}/webhooks",
    has_repository: false,
    operations: &[
        Operation::read("GET", Rule::Role(Action::ViewWebhooks), "List a registry's webhooks (`_all`: registry-wide)")
            .paged(),
        Operation::change(
            "POST",
            Rule::Role(Action::ManageWebhooks),
            "Create a webhook; the answer shows its signing secret once",
            201,
        )
        .body("NewWebhook"),
    ],
    ports: &[Port::MetadataWrite],
    handler: handler!("api-webhooks", Route::ApiWebhooks { registry } => |app, req, body| {
        webhooks(app, &req, &registry, body).await
    }),
};

/// `GET|PATCH|DELETE /api/v1/registries/<registry>/webhooks/<webhook>`.
pub const WEBHOOK: Endpoint = Endpoint {
    name: "api-webhook",
    prefix: "/api/v1",
    suffix: "/registries/{registry}/webhooks/{webhook}",
    has_repository: false,
    operations: &[
        Operation::read("GET", Rule::Role(Action::ViewWebhooks), "Show a webhook (never its secret or auth header)"),
        Operation::change(
            "PATCH",
            Rule::Role(Action::ManageWebhooks),
            "Change, enable or disable a webhook, or rotate its secret",
            200,
        )
        .body("WebhookPatch"),
        Operation::change("DELETE", Rule::Role(Action::ManageWebhooks), "Delete a webhook and its delivery log", 204),
    ],
    ports: &[Port::MetadataWrite],
    handler: handler!("api-webhook", Route::ApiWebhook { registry, webhook } => |app, req, body| {
        one_webhook(app, &req, &registry, &webhook, body).await
    }),
};

/// `POST /api/v1/registries/<registry>/webhooks/<webhook>/test`.
pub const WEBHOOK_TEST: Endpoint = Endpoint {
    name: "api-webhook-test",
    prefix: "/api/v1",
    suffix: "/registries/{registry}/webhooks/{webhook}/test",
    has_repository: false,
    operations: &[Operation::change(
        "POST",
        Rule::Role(Action::ManageWebhooks),
        "Send a PING event now and answer with the logged attempt",
        200,
    )],
    ports: &[Port::MetadataWrite],
    handler: handler!("api-webhook-test", Route::ApiWebhookTest { registry, webhook } => |app, req, body| {
        let _ = (req, body);
        let delivery = delivery::ping(app, &registry, &webhook).await?;
        object(StatusCode::OK, &json!({ "delivery": delivery }))
    }),
};

/// `GET /api/v1/registries/<registry>/webhooks/<webhook>/deliveries`.
pub const WEBHOOK_DELIVERIES: Endpoint = Endpoint {
    name: "api-webhook-deliveries",
    prefix: "/api/v1",
    suffix: "/registries/{registry}/webhooks/{webhook}/deliveries",
    has_repository: false,
    operations: &[Operation::read(
        "GET",
        Rule::Role(Action::ViewWebhooks),
        "A webhook's delivery log, newest first, with every attempt",
    )
    .paged()],
    ports: &[],
    handler: handler!("api-webhook-deliveries", Route::ApiWebhookDeliveries { registry, webhook } => |app, req, body| {
        let _ = body;
        let page = page_request(&req)?;
        let (items, more) = delivery::list(app, &registry, &webhook, page.after.as_deref(), page.limit).await?;
        page_response(&req, &items, more, |d| d.id.clone())
    }),
};

/// `POST /api/v1/registries/<registry>/webhooks/<webhook>/deliveries/<delivery>/redeliver`.
pub const WEBHOOK_REDELIVER: Endpoint = Endpoint {
    name: "api-webhook-redeliver",
    prefix: "/api/v1",
    suffix: "/registries/{registry}/webhooks/{webhook}/deliveries/{delivery}/redeliver",
    has_repository: false,
    operations: &[Operation::change(
        "POST",
        Rule::Role(Action::ManageWebhooks),
        "Queue a delivery again now, with a fresh attempt budget",
        202,
    )],
    ports: &[Port::MetadataWrite, Port::JobsSend],
    handler: handler!("api-webhook-redeliver", Route::ApiWebhookRedeliver { registry, webhook, delivery: id } => |app, req, body| {
        let _ = (req, body);
        let delivery = delivery::redeliver(app, &registry, &webhook, &id).await?;
        object(StatusCode::ACCEPTED, &delivery)
    }),
};

/// `GET|POST …/webhooks`: the scope's policies (one page: at most [`policy::MAX_PER_SCOPE`]), or a new one.
pub async fn webhooks(app: &App, head: &Head, scope: &str, body: ByteStream) -> Result<Response, OciError> {
    if head.method == Method::GET {
        policy::check_scope(app, scope).await?;
        let page = page_request(head)?;
        let (items, more) = policy::list(app, scope, page.after.as_deref(), page.limit).await?;
        let views: Vec<_> = items.iter().map(|p| p.view(None)).collect();
        return page_response(head, &views, more, |p| p.id.clone());
    }
    let new: policy::NewPolicy = read_json(body).await?;
    let by = grants(head)?.principal().to_string();
    let created = policy::create(app, scope, new, &by).await?;
    object(StatusCode::CREATED, &created)
}

/// `GET|PATCH|DELETE …/webhooks/<webhook>`.
pub async fn one_webhook(
    app: &App,
    head: &Head,
    scope: &str,
    id: &str,
    body: ByteStream,
) -> Result<Response, OciError> {
    match head.method {
        Method::GET => {
            let (found, _) = policy::get(app, scope, id).await?;
            object(StatusCode::OK, &found.view(None))
        }
        Method::PATCH => {
            let patch: policy::PolicyPatch = read_json(body).await?;
            object(StatusCode::OK, &policy::update(app, scope, id, patch).await?)
        }
        _ => {
            policy::delete(app, scope, id).await?;
            empty(StatusCode::NO_CONTENT, &[])
        }
    }
}
