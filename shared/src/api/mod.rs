//! The registry's HTTP API: [`handle`] parses the route once, dispatches to exactly one handler,
//! and turns any error into an OCI error response. Both `berth serve` and every Lambda function
//! call this same function.

pub mod blobs;
pub mod error;
pub mod listing;
pub mod manifests;
pub mod query;
pub mod referrers;
pub mod routes;
pub mod uploads;

use http::header::{HeaderName, HeaderValue};

pub use error::{ErrorCode, OciError};
pub use routes::{Route, RouteSpec, ROUTE_NAMES, ROUTE_SPECS};

use crate::app::App;
use crate::body::{Request, Response};

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
            _ => dispatch(app, route, req).await,
        },
        Err(e) => Err(e),
    };
    let mut response = result.unwrap_or_else(OciError::into_response);
    response.headers_mut().insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    response
}

/// Calls the one handler of `route`.
pub async fn dispatch(app: &App, route: Route, req: Request) -> Result<Response, OciError> {
    let (req, body) = req.into_parts();
    match route {
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
    }
}
