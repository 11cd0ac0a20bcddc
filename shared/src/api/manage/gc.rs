//! `/api/v1/gc/runs…`: start garbage-collection runs (real or dry) and read their history. The
//! collector itself is [`crate::gc`]; runs are executed by the job worker.

use http::{Method, StatusCode};

use super::policies::StartRun;
use super::{object, page_request, page_response, read_json};
use crate::api::endpoint::{handler, Endpoint, Operation, Port, Rule};
use crate::api::query::Head;
use crate::api::OciError;
use crate::api::Route;
use crate::app::App;
use crate::body::Response;
use crate::gc::{self, GcError};
use crate::storage::ByteStream;

/// `GET|POST /api/v1/gc/runs` (a started run is a queued job).
pub const GC_RUNS: Endpoint = Endpoint {
    name: "api-gc-runs",
    prefix: "/api/v1",
    suffix: "/gc/runs",
    has_repository: false,
    operations: &[
        Operation::read("GET", Rule::Admin, "List garbage-collection runs, newest first").paged(),
        Operation::change("POST", Rule::Admin, "Start a garbage-collection run (dry_run=true only counts)", 202)
            .body("StartRun"),
    ],
    ports: &[Port::MetadataWrite, Port::JobsSend],
    handler: handler!("api-gc-runs", Route::ApiGcRuns => |app, req, body| runs(app, &req, body).await),
};

/// `GET /api/v1/gc/runs/<run>`.
pub const GC_RUN: Endpoint = Endpoint {
    name: "api-gc-run",
    prefix: "/api/v1",
    suffix: "/gc/runs/{run}",
    has_repository: false,
    operations: &[Operation::read("GET", Rule::Admin, "Show a garbage-collection run")],
    ports: &[],
    handler: handler!("api-gc-run", Route::ApiGcRun { run } => |app, req, body| self::run(app, &run).await),
};

/// `GET|POST /api/v1/gc/runs`: runs newest first (paged by run id), or a run started now
/// (`{"dry_run": bool}`, 202, status `queued`).
pub async fn runs(app: &App, head: &Head, body: ByteStream) -> Result<Response, OciError> {
    if head.method == Method::GET {
        let page = page_request(head)?;
        let (runs, more) = gc::list(app, page.after.as_deref(), page.limit).await?;
        return page_response(head, &runs, more, |r| r.id.clone());
    }
    let req: StartRun = read_json(body).await?;
    object(StatusCode::ACCEPTED, &gc::start(app, req.dry_run).await?)
}

/// `GET /api/v1/gc/runs/<run>`: one run and its counts.
pub async fn run(app: &App, id: &str) -> Result<Response, OciError> {
    let run = gc::get(app, id).await?.ok_or_else(|| GcError::UnknownRun(id.to_string()))?;
    object(StatusCode::OK, &run)
}
