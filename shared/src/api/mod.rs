//! The registry's HTTP API: [`handle`] parses the route once, dispatches to exactly one handler,
//! and turns any error into an OCI error response. Both `berth serve` and every Lambda function
//! call this same function.

pub mod blobs;
pub mod console;
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
pub use routes::{Route, DECLARATIONS, ENDPOINTS, ROUTE_NAMES};

use crate::app::App;
use crate::body::{Request, Response};
use query::Query;

/// Every response carries the API version header docker checks for.
pub const API_VERSION_HEADER: HeaderName = HeaderName::from_static("docker-distribution-api-version");

/// Which routes a process serves, and where their handlers come from. Generic rather than a
/// run-time choice so that a Lambda function, which serves one [`Endpoint`], never references
/// [`Route::endpoint`] and so links only its own handler.
pub trait Routes: Copy + Send + Sync {
    /// The handler for `route`, or the error a request for a route not served here gets.
    fn handler(self, route: &Route) -> Result<endpoint::Handler, OciError>;
}

/// Every route: what `berth serve` and the tests serve.
#[derive(Debug, Clone, Copy)]
pub struct AllRoutes;

impl Routes for AllRoutes {
    fn handler(self, route: &Route) -> Result<endpoint::Handler, OciError> {
        Ok(route.endpoint().handler)
    }
}

/// One endpoint's route: what its Lambda function serves.
impl Routes for &'static Endpoint {
    fn handler(self, route: &Route) -> Result<endpoint::Handler, OciError> {
        if self.name == route.name() {
            Ok(self.handler)
        } else {
            Err(OciError::new(
                ErrorCode::Unsupported,
                format!("this function serves route {}, not {}", self.name, route.name()),
            )
            .status(http::StatusCode::NOT_FOUND))
        }
    }
}

/// Serves one request.
pub async fn handle(app: &App, routes: impl Routes, req: Request) -> Response {
    let host = req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok());
    let mirrored = host.and_then(|h| mirror_path(app, h, req.uri().path()));
    let path = mirrored.as_deref().unwrap_or(req.uri().path());
    let result = match Route::parse(req.method(), path, host) {
        Ok(route) => match routes.handler(&route) {
            Ok(handler) => guarded(app, route, handler, req).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let mut response = result.unwrap_or_else(OciError::into_response);
    response.headers_mut().insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    response
}

/// The path a request on a mirror host (`BERTH_MIRROR_HOSTS`) stands for: its repository under
/// the host's cache registry (`/v2/library/alpine/…` → `/v2/<registry>/library/alpine/…`), so a
/// Docker `registry-mirrors` entry or a containerd `hosts.toml` works without the prefix. The
/// base route and the catalog stay as they are.
fn mirror_path(app: &App, host: &str, path: &str) -> Option<String> {
    let registry = app.settings.cache.mirror_for(host)?;
    let rest = path.strip_prefix("/v2/")?;
    if rest.is_empty() || rest == "_catalog" {
        return None;
    }
    Some(format!("/v2/{registry}/{rest}"))
}

/// Authorizes the request ([`crate::access::guard::authorize`]), then calls `handler` with its
/// grants in the request extensions. Changes, and refusals of an authenticated caller, go to the
/// audit log.
async fn guarded(app: &App, route: Route, handler: endpoint::Handler, req: Request) -> Result<Response, OciError> {
    let (mut head, body) = req.into_parts();
    let endpoint = route.declaration();
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
    let actor = crate::events::Actor {
        operator: who.clone(),
        host: head.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string),
        replicated: head.headers.contains_key(crate::events::REPLICATION_HEADER),
    };
    let result = crate::events::acting(actor, handler(app, route, Request::from_parts(head, body))).await;
    if let Ok(response) = &result {
        if let Some(action) = audit_as.action(endpoint, response.status(), mounting) {
            audit.record(app, &who, action, response.status()).await;
        }
    }
    result
}
