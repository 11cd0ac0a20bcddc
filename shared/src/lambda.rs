//! The only `lambda_http` / `lambda_runtime` glue. A route function adapts API Gateway events to
//! the same [`api::handle`] that `berth serve` calls (as `serve.rs` adapts hyper requests); the
//! job worker runs SQS-delivered jobs with partial batch failures; the scheduler turns
//! EventBridge ticks into queued housekeeping jobs.
//!
//! Every `functions/<name>/src/main.rs` is one call: [`main_route`], [`main_job_worker`] or
//! [`main_job_scheduler`]. The per-event functions ([`serve_lambda_request`], [`process_job_batch`],
//! [`schedule_housekeeping`]) take an [`App`] so tests drive them on the embedded backend.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue, LINK, LOCATION};
use http::StatusCode;
use http_body_util::BodyExt;
use lambda_http::request::RequestContext;
use lambda_http::{Body, IntoResponse, RequestExt};
use lambda_runtime::{service_fn, LambdaEvent};
use tracing::Instrument;

use crate::api::{self, Endpoint, ErrorCode, OciError, Port, API_VERSION_HEADER};
use crate::app::App;
use crate::body::{empty_stream, once_stream, ResponseBody};
use crate::jobs;
use crate::queue::{Job, QueueError};
use crate::schedule::ScheduleError;

/// The error a function's `main` returns (re-exported so function crates need no Lambda dependency).
pub type Error = lambda_runtime::Error;

/// The largest response body a route function returns. Lambda caps a synchronous response at
/// 6 MB of JSON, and the body travels base64-encoded inside it (4/3 larger), so this is 3/4 of
/// 6 MiB less 64 KiB for the status, headers and envelope. Blob GETs are redirects under Lambda and
/// manifests are at most 4 MiB, so only a misconfiguration gets near it.
pub const MAX_RESPONSE_BODY: usize = (6 * 1024 * 1024 - 64 * 1024) / 4 * 3;

/// The whole `main` of a route function: `berth::route_function!(berth::api::blobs::GET);`. It
/// hands [`main_route`] the endpoint's ports as a const parameter, so the adapters (and adapter
/// calls) the endpoint does not use are not merely left unbuilt but not linked into the function.
#[macro_export]
macro_rules! route_function {
    ($endpoint:path) => {
        fn main() -> Result<(), $crate::lambda::Error> {
            $crate::lambda::block_on($crate::lambda::main_route::<{ $crate::api::Port::mask($endpoint.ports) }>(
                &$endpoint,
            ))
        }
    };
}

/// Runs a function's `main` future on a multi-threaded tokio runtime (what `#[tokio::main]`
/// does), so function crates need no tokio dependency of their own.
pub fn block_on<F: Future<Output = Result<(), Error>>>(main: F) -> Result<(), Error> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(main)
}

/// `main` of a route function (through [`route_function!`]): tracing, the AWS-backed [`App`]
/// holding only `PORTS` (once per cold start), then [`run_route`]. `PORTS` must be the
/// endpoint's [`Port::mask`], which [`route_function!`] guarantees and this checks.
pub async fn main_route<const PORTS: u16>(endpoint: &'static Endpoint) -> Result<(), Error> {
    crate::telemetry::init();
    if PORTS != Port::mask(endpoint.ports) {
        tracing::error!(function = endpoint.name, "the function's ports differ from its endpoint's");
        return Err(format!("{}: ports {PORTS:#x} differ from the endpoint's", endpoint.name).into());
    }
    let app = crate::aws::app_from_env_with::<PORTS>()
        .await
        .inspect_err(|e| tracing::error!(function = endpoint.name, error = %e, "cannot initialise the function"))?;
    run_route(endpoint, app).await
}

/// `main` of the `job-worker` function: tracing, the [`App`], then [`run_job_worker`].
pub async fn main_job_worker() -> Result<(), Error> {
    crate::telemetry::init();
    let app = init_app("job-worker").await?;
    run_job_worker(app).await
}

/// `main` of the `job-scheduler` function: tracing, the [`App`], then [`run_scheduler`].
pub async fn main_job_scheduler() -> Result<(), Error> {
    crate::telemetry::init();
    let app = init_app("job-scheduler").await?;
    run_scheduler(app).await
}

/// The job functions' [`App`]: every client.
async fn init_app(function: &'static str) -> Result<App, Error> {
    crate::aws::app_from_env_with::<{ Port::ALL }>()
        .await
        .map_err(Error::from)
        .inspect_err(|e| tracing::error!(function, error = %e, "cannot initialise the function"))
}

/// Serves one route's API Gateway events until the runtime stops the process.
pub async fn run_route(endpoint: &'static Endpoint, app: App) -> Result<(), Error> {
    let app = &app;
    lambda_http::run(service_fn(move |req: lambda_http::Request| async move {
        Ok::<_, Infallible>(ExactBody(serve_lambda_request(app, endpoint, req).await))
    }))
    .await
}

/// Answers one API Gateway request with `endpoint`'s route: the request becomes an
/// `http::Request<ByteStream>` with a path starting `/v2`, goes through [`api::handle`], and the
/// response comes back with its body collected (at most [`MAX_RESPONSE_BODY`] bytes) as binary.
pub async fn serve_lambda_request(
    app: &App,
    endpoint: &'static Endpoint,
    req: lambda_http::Request,
) -> lambda_http::Response<Body> {
    let only = endpoint.name;
    let client_prefix = client_stage_prefix(&req);
    let req = match to_berth_request(req) {
        Ok(req) => req,
        Err(e) => {
            tracing::warn!(route = only, error = %e, "cannot adapt the API Gateway request");
            let error = OciError::new(ErrorCode::Unsupported, format!("unusable request: {e}"));
            return to_lambda_response(only, api_error(error.status(StatusCode::BAD_REQUEST)), None).await;
        }
    };
    let response = api::handle(app, endpoint, req).await;
    to_lambda_response(only, response, client_prefix.as_deref()).await
}

/// A response handed to `lambda_http` as is. `lambda_http` would otherwise re-encode bodies by
/// `Content-Type` (text types are decoded as UTF-8, dropping a BOM or invalid bytes); registry
/// bodies must reach the client byte for byte, so they always travel base64-encoded.
pub struct ExactBody(pub lambda_http::Response<Body>);

impl IntoResponse for ExactBody {
    fn into_response(self) -> Pin<Box<dyn Future<Output = lambda_http::Response<Body>> + Send>> {
        Box::pin(std::future::ready(self.0))
    }
}

/// The API Gateway stage, unless it is the `$default` stage (which adds no path prefix).
fn named_stage(req: &lambda_http::Request) -> Option<String> {
    let stage = match req.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => ctx.stage.clone(),
        RequestContext::ApiGatewayV1(ctx) => ctx.stage.clone(),
        _ => None,
    }?;
    (!stage.is_empty() && stage != "$default").then_some(stage)
}

/// `path` without a leading `/<stage>`. A prefix is stripped only when a `/v2` path follows it, so
/// the result is right whether or not `lambda_http` added the stage (it does unless
/// `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` is set) and whether or not the client's path had it
/// (it has on the `execute-api` host, not behind a custom domain). A stage named `v2` is ambiguous
/// with a repository named `v2/...` behind a custom domain: don't name a stage `v2`.
pub fn strip_stage<'a>(path: &'a str, stage: Option<&str>) -> &'a str {
    let Some(stage) = stage.filter(|s| !s.is_empty() && *s != "$default") else {
        return path;
    };
    match path.strip_prefix('/').and_then(|p| p.strip_prefix(stage)) {
        Some(rest) if rest == "/v2" || rest.starts_with("/v2/") => rest,
        _ => path,
    }
}

/// `/<stage>` when the path the client sent (the event's `rawPath`) carried the stage, so that
/// relative `Location` and `Link` URLs in the answer lead the client back through the same stage.
fn client_stage_prefix(req: &lambda_http::Request) -> Option<String> {
    let stage = named_stage(req)?;
    let raw = req.raw_http_path();
    (strip_stage(raw, Some(&stage)).len() < raw.len()).then(|| format!("/{stage}"))
}

/// Why an event could not become a registry request.
#[derive(Debug, thiserror::Error)]
enum AdaptError {
    /// The path and query do not form a URI.
    #[error("invalid path or query: {0}")]
    Uri(#[from] http::Error),
}

/// The registry request for an API Gateway request: stage stripped from the path, the query kept
/// (rebuilt from the parsed parameters, repeated keys included, if the URI lost it), the body as
/// a one-buffer stream (base64 is already decoded by `lambda_http`).
/// The caller's address as API Gateway saw it (not a client-supplied header).
fn source_ip(req: &lambda_http::Request) -> Option<std::net::IpAddr> {
    match req.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => ctx.http.source_ip.as_deref()?.parse().ok(),
        RequestContext::ApiGatewayV1(ctx) => ctx.identity.source_ip.as_deref()?.parse().ok(),
        _ => None,
    }
}

fn to_berth_request(req: lambda_http::Request) -> Result<crate::body::Request, AdaptError> {
    let stage = named_stage(&req);
    let source = source_ip(&req);
    let path = strip_stage(req.uri().path(), stage.as_deref()).to_string();
    let query = match req.uri().query() {
        Some(q) => q.to_string(),
        None => req.query_string_parameters_ref().map(|q| q.to_query_string()).unwrap_or_default(),
    };
    let path_and_query = if query.is_empty() { path } else { format!("{path}?{query}") };
    let (mut parts, body) = req.into_parts();
    parts.uri = http::Uri::builder().path_and_query(path_and_query).build()?;
    if let Some(ip) = source {
        parts.extensions.insert(crate::web::ClientIp(ip));
    }
    let bytes: Bytes = match body {
        Body::Text(text) => text.into(),
        Body::Binary(bytes) => bytes.into(),
        _ => Bytes::new(),
    };
    let stream = if bytes.is_empty() { empty_stream() } else { once_stream(bytes) };
    Ok(http::Request::from_parts(parts, stream))
}

/// The body would not fit in a Lambda response, or could not be read.
#[derive(Debug, thiserror::Error)]
enum CollectError {
    /// More than [`MAX_RESPONSE_BODY`] bytes.
    #[error("response body of at least {0} bytes exceeds the Lambda limit of {MAX_RESPONSE_BODY} bytes")]
    TooLarge(u64),
    /// The body stream failed.
    #[error("reading the response body: {0}")]
    Read(#[from] std::io::Error),
}

async fn collect_capped(body: ResponseBody) -> Result<Bytes, CollectError> {
    let mut body = match body {
        ResponseBody::Empty => return Ok(Bytes::new()),
        ResponseBody::Full(bytes) => {
            let bytes = bytes.unwrap_or_default();
            return if bytes.len() > MAX_RESPONSE_BODY {
                Err(CollectError::TooLarge(bytes.len() as u64))
            } else {
                Ok(bytes)
            };
        }
        ResponseBody::Stream(_, len) if len > MAX_RESPONSE_BODY as u64 => return Err(CollectError::TooLarge(len)),
        stream => stream,
    };
    let mut out = BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if out.len() + data.len() > MAX_RESPONSE_BODY {
                return Err(CollectError::TooLarge((out.len() + data.len()) as u64));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// An OCI error as a registry response, with the API version header `api::handle` adds.
fn api_error(error: OciError) -> crate::body::Response {
    let mut response = error.into_response();
    response.headers_mut().insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    response
}

/// The `lambda_http` response for a registry response: body collected, relative `Location` and
/// `Link` URLs prefixed with the client's stage.
async fn to_lambda_response(
    route: &'static str,
    response: crate::body::Response,
    client_prefix: Option<&str>,
) -> lambda_http::Response<Body> {
    let (mut parts, body) = response.into_parts();
    let bytes = match collect_capped(body).await {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::error!(route, status = %parts.status, error = %e, "cannot return this response from Lambda; answering 500");
            let (error_parts, error_body) =
                api_error(OciError::new(ErrorCode::Unknown, serde_json::Value::Null)).into_parts();
            parts = error_parts;
            match error_body {
                ResponseBody::Full(Some(bytes)) => bytes,
                _ => Bytes::new(),
            }
        }
    };
    if let Some(prefix) = client_prefix {
        prefix_header(&mut parts.headers, LOCATION, "/v2/", prefix);
        prefix_header(&mut parts.headers, LINK, "</v2/", prefix);
    }
    let body = if bytes.is_empty() { Body::Empty } else { Body::Binary(bytes.to_vec()) };
    lambda_http::Response::from_parts(parts, body)
}

/// Inserts `prefix` before the `/v2/` of a header value that starts with `start` (`/v2/` for
/// `Location`, `</v2/` for `Link`); absolute URLs (the blob store, an upload gateway) stay as they are.
fn prefix_header(headers: &mut http::HeaderMap, name: HeaderName, start: &str, prefix: &str) {
    let prefixed = headers.get(&name).and_then(|v| v.to_str().ok()).filter(|v| v.starts_with(start)).and_then(|v| {
        let (open, rest) = v.split_at(start.len() - "/v2/".len());
        HeaderValue::from_str(&format!("{open}{prefix}{rest}")).ok()
    });
    if let Some(value) = prefixed {
        headers.insert(name, value);
    }
}

/// Runs SQS-delivered jobs until the runtime stops the process. The event source mapping must set
/// `function_response_types = ["ReportBatchItemFailures"]`.
pub async fn run_job_worker(app: App) -> Result<(), Error> {
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Infallible>(process_job_batch(app, event.payload).await)
    }))
    .await
}

/// Why one SQS record's job did not complete.
#[derive(Debug, thiserror::Error)]
enum RecordError {
    /// The record has no body.
    #[error("the SQS message has no body")]
    NoBody,
    /// The body is not a `Job`.
    #[error("the SQS message body is not a job: {0}")]
    Malformed(#[from] serde_json::Error),
    /// The job ran and failed.
    #[error(transparent)]
    Failed(#[from] jobs::JobError),
    /// The job was not due and could not be delayed again.
    #[error("delaying a job that is not due yet: {0}")]
    Delay(#[from] QueueError),
}

/// Runs the job of every record, side by side (a replication copy step or a webhook delivery
/// waiting on a remote server must not push the batch's other records past the function's
/// timeout: each step is bounded by it, not by it divided by the batch), and lists the records
/// whose job failed or could not be read, so SQS redelivers only those (after the visibility
/// timeout; the redrive policy moves a record that keeps failing to the dead-letter queue). A
/// record without a message id is reported with an empty id, which makes Lambda retry the
/// whole batch: jobs are idempotent.
pub async fn process_job_batch(app: &App, event: SqsEvent) -> SqsBatchResponse {
    let outcomes = futures_util::future::join_all(event.records.iter().map(|record| async move {
        let message_id = record.message_id.clone().unwrap_or_default();
        let attempt = record.attributes.get("ApproximateReceiveCount").map_or("?", String::as_str);
        let span = tracing::info_span!("job", message_id = %message_id, attempt);
        match run_record(app, record).instrument(span).await {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(message_id = %message_id, attempt, error = %e, "job failed; SQS will redeliver it");
                Some(message_id)
            }
        }
    }))
    .await;
    let mut response = SqsBatchResponse::default();
    for failed in outcomes.into_iter().flatten() {
        response.add_failure(failed);
    }
    response
}

/// The message attribute with which the SQS adapter marks a job delayed past SQS's 900-second
/// limit: when the job is due, in Unix milliseconds.
pub use crate::queue::sqs::NOT_BEFORE_ATTRIBUTE;

async fn run_record(app: &App, record: &SqsMessage) -> Result<(), RecordError> {
    let job: Job = serde_json::from_str(record.body.as_deref().ok_or(RecordError::NoBody)?)?;
    if let Some(due_ms) = not_before(record) {
        let now_ms = u64::try_from(app.clock.now()).unwrap_or(0).saturating_mul(1000);
        if due_ms > now_ms {
            // Delivered early (SQS delays at most 900 s): send it again for the rest of its delay,
            // as the adapter's own receive does, and let this copy be deleted.
            let remaining = Duration::from_millis(due_ms - now_ms);
            tracing::info!(kind = %job.kind, ?remaining, "job is not due yet; delaying it again");
            return Ok(app.queue.enqueue(&job, remaining).await?);
        }
    }
    tracing::info!(kind = %job.kind, "running job");
    Ok(jobs::run(app, &job).await?)
}

fn not_before(record: &SqsMessage) -> Option<u64> {
    record.message_attributes.get(NOT_BEFORE_ATTRIBUTE)?.string_value.as_deref()?.trim().parse().ok()
}

/// Enqueues housekeeping on every EventBridge schedule tick until the runtime stops the process.
pub async fn run_scheduler(app: App) -> Result<(), Error> {
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<EventBridgeEvent>| async move {
        schedule_housekeeping(app, &event.payload).await.map(|_| ()).map_err(Error::from)
    }))
    .await
}

/// The jobs every schedule tick enqueues (shared with `berth serve`'s schedule loop).
pub use crate::jobs::housekeeping_jobs;

/// One scheduler tick: makes sure the built-in schedules exist, then enqueues the job of every
/// stored schedule that is due (cleanup cycles, upload expiry, garbage collection), exactly once per due time however
/// often EventBridge delivers the tick (see [`crate::schedule`]). Returns how many due times it
/// claimed. A failure fails the invocation, and EventBridge's asynchronous invoke retries it.
pub async fn schedule_housekeeping(app: &App, event: &EventBridgeEvent) -> Result<usize, ScheduleError> {
    crate::jobs::ensure_builtins(app).await?;
    let fired = crate::schedule::fire_due(app).await?;
    tracing::info!(event_id = event.id.as_deref().unwrap_or(""), time = ?event.time, fired, "scheduler tick");
    Ok(fired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_only_a_named_stage_followed_by_v2() {
        assert_eq!(strip_stage("/prod/v2/a/tags/list", Some("prod")), "/v2/a/tags/list");
        assert_eq!(strip_stage("/prod/v2", Some("prod")), "/v2");
        assert_eq!(strip_stage("/v2/a/tags/list", Some("prod")), "/v2/a/tags/list");
        assert_eq!(strip_stage("/v2/", Some("$default")), "/v2/");
        assert_eq!(strip_stage("/v2/", None), "/v2/");
        assert_eq!(strip_stage("/production/v2/", Some("prod")), "/production/v2/");
        assert_eq!(strip_stage("/v2/_catalog", Some("v2")), "/v2/_catalog");
        assert_eq!(strip_stage("/v2/v2/_catalog", Some("v2")), "/v2/_catalog");
    }

    #[test]
    fn the_body_cap_fits_a_base64_lambda_response() {
        assert!(MAX_RESPONSE_BODY.div_ceil(3) * 4 + 64 * 1024 <= 6 * 1024 * 1024);
    }
}
