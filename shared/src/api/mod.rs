//! The registry's HTTP API: [`handle`] parses the route once, dispatches to exactly one handler,
//! and turns any error into an OCI error response. Both `berth serve` and every Lambda function
//! call this same function.

pub mod blobs;
pub mod error;
pub mod gate;
pub mod listing;
pub mod manage;
pub mod manifests;
pub mod query;
pub mod referrers;
pub mod routes;
pub mod uploads;

use http::header::{HeaderName, HeaderValue};
use http::Method;

pub use error::{ErrorCode, OciError};
pub use routes::{Route, RouteSpec, ROUTE_NAMES, ROUTE_SPECS};

use crate::app::App;
use crate::body::{Request, Response};
use query::Query;

/// Every response carries the API version header docker checks for.
pub const API_VERSION_HEADER: HeaderName = HeaderName::from_static("docker-distribution-api-version");

/// Which routes a process serves: all of them (`berth serve`) or one (a Lambda function).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteFilter {
    /// every route
    All,
    /// only the route of this name
    Only(&'static str),
}

/// Serves one request.
pub async fn handle(app: &App, filter: RouteFilter, req: Request) -> Response {
    let host = req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok());
    let result = match Route::parse(req.method(), req.uri().path(), host) {
        Ok(route) => match filter {
            RouteFilter::Only(name) if name != route.name() => Err(OciError::new(
                ErrorCode::Unsupported,
                format!("this function serves route {name}, not {}", route.name()),
            )
            .status(http::StatusCode::NOT_FOUND)),
            _ => guarded(app, route, req).await,
        },
        Err(e) => Err(e),
    };
    let mut response = result.unwrap_or_else(OciError::into_response);
    response.headers_mut().insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    response
}

/// Authorizes the request ([`crate::access::guard::authorize`]), then dispatches it with its
/// grants in the request extensions. Changes, and refusals of an authenticated caller, go to the
/// audit log.
async fn guarded(app: &App, route: Route, req: Request) -> Result<Response, OciError> {
    let (mut head, body) = req.into_parts();
    let name = route.name();
    let mounting = Query::of(&head).get("mount").is_some();
    let audit = crate::audit::Context::of(&head);
    let grants = match crate::access::guard::authorize(app, &route.gate(&head.method), &head).await {
        Ok(grants) => grants,
        Err(refusal) => {
            if let (Some(who), crate::access::AccessError::Denied(_)) = (&refusal.who, &refusal.error) {
                audit.record_refusal(app, who, name, http::StatusCode::FORBIDDEN).await;
            }
            return Err(refusal.into());
        }
    };
    let who = grants.as_ref().map_or("-".to_string(), |g| g.principal().to_string());
    if let Some(grants) = grants {
        head.extensions.insert(grants);
    }
    let method = head.method.clone();
    let result = dispatch(app, route, Request::from_parts(head, body)).await;
    if let Ok(response) = &result {
        if let Some(action) = crate::audit::action_of(name, &method, response.status(), mounting) {
            audit.record(app, &who, action, response.status()).await;
        }
    }
    result
}

/// Calls the one handler of `route`.
pub async fn dispatch(app: &App, route: Route, req: Request) -> Result<Response, OciError> {
    let (req, body) = req.into_parts();
    match route {
        Route::Token => crate::access::token_service::issue(app, &req, body).await.map_err(|e| {
            let basic = matches!(e, crate::access::AccessError::Unauthenticated(_));
            let err = OciError::from(e);
            if basic {
                err.header(http::header::WWW_AUTHENTICATE, "Basic realm=\"berth\"")
            } else {
                err
            }
        }),
        Route::Base => listing::base(),
        Route::Catalog => listing::catalog(app, &req).await,
        Route::TagsList { name } => listing::tags(app, &name, &req).await,
        Route::ManifestGet { name, reference } => manifests::get(app, &name, &reference, &req).await,
        Route::ManifestPut { name, reference } => manifests::put(app, &name, &reference, &req, body).await,
        Route::ManifestDelete { name, reference } => manifests::delete(app, &name, &reference).await,
        Route::BlobGet { name, digest } => blobs::get(app, &name, &digest, &req).await,
        Route::BlobDelete { name, digest } => blobs::delete(app, &name, &digest).await,
        Route::UploadStart { name } => uploads::start(app, &name, &req, body).await,
        Route::UploadPatch { name, id } => uploads::patch(app, &name, &id, &req, body).await,
        Route::UploadPut { name, id } => uploads::put(app, &name, &id, &req, body).await,
        Route::UploadStatus { name, id } => uploads::status(app, &name, &id, &req).await,
        Route::UploadCancel { name, id } => uploads::cancel(app, &name, &id, &req).await,
        Route::Referrers { name, digest } => referrers::get(app, &name, &digest, &req).await,
        Route::ApiRegistries if req.method == Method::GET => manage::registries::list(app, &req).await,
        Route::ApiRegistries => manage::registries::create(app, &req, body).await,
        Route::ApiRegistry { registry } => match req.method {
            Method::GET => manage::registries::show(app, &registry).await,
            Method::PATCH => manage::registries::change(app, &registry, body).await,
            _ => manage::registries::delete(app, &req, &registry).await,
        },
        Route::ApiImages { registry } => manage::registries::images(app, &req, &registry).await,
        Route::ApiImage { name } => manage::artifacts::delete_whole(app, &name).await,
        Route::ApiArtifacts { name } => manage::artifacts::list(app, &req, &name).await,
        Route::ApiArtifact { name, digest } if req.method == Method::GET => {
            manage::artifacts::show(app, &name, &digest).await
        }
        Route::ApiArtifact { name, digest } => manage::artifacts::delete(app, &name, &digest).await,
        Route::ApiTags { name } => manage::artifacts::tags(app, &req, &name).await,
        Route::ApiTag { name, tag } if req.method == Method::PUT => {
            manage::artifacts::put_tag(app, &name, &tag, body).await
        }
        Route::ApiTag { name, tag } => manage::artifacts::delete_tag(app, &name, &tag).await,
        Route::ApiUsers if req.method == Method::GET => manage::users::list(app, &req).await,
        Route::ApiUsers => manage::users::create(app, &req, body).await,
        Route::ApiUser { user } => match req.method {
            Method::GET => manage::users::show(app, &user).await,
            Method::PATCH => manage::users::change(app, &user, body).await,
            _ => manage::users::delete(app, &req, &user).await,
        },
        Route::ApiKeys { user } if req.method == Method::GET => manage::users::keys(app, &req, &user).await,
        Route::ApiKeys { user } => manage::users::create_key(app, &user).await,
        Route::ApiKey { user, key } => manage::users::revoke_key(app, &user, &key).await,
        Route::ApiKeyRotate { user, key } => manage::users::rotate_key(app, &user, &key).await,
        Route::ApiAudit => {
            let page = manage::page_request(&req)?;
            let (items, more) = crate::audit::list(app, page.after.as_deref(), page.limit).await?;
            manage::page_response(&req, &items, more, |e| e.id.clone())
        }
        Route::ApiOpenApi => manage::openapi::serve(),
        Route::ApiCleanupRules { registry } => manage::policies::cleanup_rules(app, &req, &registry, body).await,
        Route::ApiCleanupRule { registry, rule } => {
            manage::policies::cleanup_rule(app, &req, &registry, &rule, body).await
        }
        Route::ApiCleanupSchedule { registry } => manage::policies::cleanup_schedule(app, &req, &registry, body).await,
        Route::ApiCleanupRuns { registry } => manage::policies::cleanup_runs(app, &req, &registry, body).await,
        Route::ApiCleanupRun { registry, run } => manage::policies::cleanup_run(app, &req, &registry, &run).await,
        Route::ApiProtectionRules { registry } => manage::policies::protection_rules(app, &req, &registry, body).await,
        Route::ApiProtectionRule { registry, rule } => {
            manage::policies::protection_rule(app, &req, &registry, &rule, body).await
        }
        Route::ApiGcRuns => manage::gc::runs(app, &req, body).await,
        Route::ApiGcRun { run } => manage::gc::run(app, &run).await,
    }
}
