//! `/api/v1/gc/runs…`: start garbage-collection runs (real or dry) and read their history. The
//! collector itself is [`crate::gc`]; runs are executed by the job worker.

use http::{Method, StatusCode};

use super::policies::StartRun;
use super::{object, page_request, page_response, read_json};
use crate::api::query::Head;
use crate::api::OciError;
use crate::app::App;
use crate::body::Response;
use crate::gc::{self, GcError};
use crate::storage::ByteStream;

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
