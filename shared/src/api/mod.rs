//! The registry's HTTP API: [`handle`] parses the route once, dispatches to exactly one handler,
//! and turns any error into an OCI error response. Both `berth serve` and every Lambda function
//! call this same function.

pub mod blobs;
pub mod endpoint;
pub mod error;
pub mod gate;
pub mod listing;
pub mod manage;
pub mod manifests;
pub mod query;
pub mod referrers;
pub mod routes;
pub mod token;
pub mod uploads;

use http::header::{HeaderName, HeaderValue};

pub use endpoint::{Endpoint, Port};
pub use error::{ErrorCode, OciError};
pub use routes::{Route, ENDPOINTS, ROUTE_NAMES};

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
    /// only this endpoint's route
    Only(&'static Endpoint),
}

/// Serves one request.
pub async fn handle(app: &App, filter: RouteFilter, req: Request) -> Response {
    let host = req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok());
    let result = match Route::parse(req.method(), req.uri().path(), host) {
        Ok(route) => match filter {
            RouteFilter::Only(endpoint) if endpoint.name != route.name() => Err(OciError::new(
                ErrorCode::Unsupported,
                format!("this function serves route {}, not {}", endpoint.name, route.name()),
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
    let endpoint = route.endpoint();
    let name = endpoint.name;
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
    let audit_as = endpoint.operation(&head.method).map_or(endpoint::Audit::Never, |o| o.audit);
    let result = dispatch(app, route, Request::from_parts(head, body)).await;
    if let Ok(response) = &result {
        if let Some(action) = audit_as.action(endpoint, response.status(), mounting) {
            audit.record(app, &who, action, response.status()).await;
        }
    }
    result
}

/// Calls the one handler of `route`, the one its [`Endpoint`] declares.
pub async fn dispatch(app: &App, route: Route, req: Request) -> Result<Response, OciError> {
    let handler = route.endpoint().handler;
    handler(app, route, req).await
}
