//! `/v2/<name>/blobs/uploads/…`: opening, appending to, finishing, inspecting and cancelling
//! upload sessions, plus monolithic uploads and cross-repository mounts.

use http::{header, StatusCode};

use super::endpoint::{handler, Audit, Endpoint, Operation, Port, Rule};
use super::error::{ErrorCode, OciError};
use super::query::{digest_header, empty, header_str, Head, Query};
use super::Route;
use crate::access::Grants;
use crate::access::RepoAction;
use crate::app::App;
use crate::body::Response;
use crate::metadata::UploadSession;
use crate::oci::{Algorithm, ByteRange, Digest, RepoName, UploadId};
use crate::registry::uploads::{self, Chunk, UploadError};
use crate::storage::ByteStream;
use crate::upload_token::TokenError;

/// Every upload route needs push on its repository.
const PUSH: Rule = Rule::Repo(RepoAction::Push);

/// `POST /v2/<name>/blobs/uploads/`: open a session, upload whole, or mount.
pub const START: Endpoint = Endpoint {
    name: "upload-start",
    prefix: "/v2",
    suffix: "/blobs/uploads/",
    has_repository: true,
    operations: &[Operation::change("POST", PUSH, "Open an upload, upload a blob whole, or mount one", 202)
        .audit(Audit::BlobCreated)],
    ports: &[
        Port::BlobsRead,
        Port::BlobsWrite,
        Port::UploadsRead,
        Port::UploadsWrite,
        Port::UploadsAbort,
        Port::UploadsList,
        Port::MetadataWrite,
    ],
    handler: handler!("upload-start", Route::UploadStart { name } => |app, req, body| start(app, &name, &req, body).await),
};

/// `PATCH /v2/<name>/blobs/uploads/<id>`: append a chunk or a stream.
pub const PATCH: Endpoint = Endpoint {
    name: "upload-patch",
    prefix: "/v2",
    suffix: "/blobs/uploads/{id}",
    has_repository: true,
    operations: &[Operation::change("PATCH", PUSH, "Append to an upload", 202).audit(Audit::Never)],
    ports: &[Port::UploadsRead, Port::UploadsWrite, Port::UploadsAbort, Port::MetadataWrite],
    handler: handler!("upload-patch", Route::UploadPatch { name, id } => |app, req, body| patch(app, &name, &id, &req, body).await),
};

/// `PUT /v2/<name>/blobs/uploads/<id>?digest=`: finish an upload.
pub const PUT: Endpoint = Endpoint {
    name: "upload-put",
    prefix: "/v2",
    suffix: "/blobs/uploads/{id}",
    has_repository: true,
    operations: &[Operation::change("PUT", PUSH, "Finish an upload", 201).audit(Audit::BlobUpload)],
    ports: &[
        Port::BlobsRead,
        Port::BlobsWrite,
        Port::UploadsRead,
        Port::UploadsWrite,
        Port::UploadsAbort,
        Port::UploadsList,
        Port::MetadataWrite,
    ],
    handler: handler!("upload-put", Route::UploadPut { name, id } => |app, req, body| put(app, &name, &id, &req, body).await),
};

/// `GET /v2/<name>/blobs/uploads/<id>`: an upload's progress.
pub const STATUS: Endpoint = Endpoint {
    name: "upload-status",
    prefix: "/v2",
    suffix: "/blobs/uploads/{id}",
    has_repository: true,
    operations: &[Operation { success: 204, ..Operation::read("GET", PUSH, "An upload's progress") }],
    ports: &[],
    handler: handler!("upload-status", Route::UploadStatus { name, id } => |app, req, body| status(app, &name, &id, &req).await),
};

/// `DELETE /v2/<name>/blobs/uploads/<id>`: cancel an upload.
pub const CANCEL: Endpoint = Endpoint {
    name: "upload-cancel",
    prefix: "/v2",
    suffix: "/blobs/uploads/{id}",
    has_repository: true,
    operations: &[Operation::change("DELETE", PUSH, "Cancel an upload", 204)],
    ports: &[Port::UploadsAbort, Port::UploadsList, Port::MetadataWrite],
    handler: handler!("upload-cancel", Route::UploadCancel { name, id } => |app, req, body| cancel(app, &name, &id, &req).await),
};

/// `POST`: mount from another repository, take a whole blob (`?digest=`), or open a session.
pub async fn start(app: &App, name: &RepoName, req: &Head, body: ByteStream) -> Result<Response, OciError> {
    let q = Query::of(req);
    let grants = grants_of(req)?;
    if let (Some(mount), Some(from)) = (q.get("mount"), q.get("from")) {
        let digest: Digest = mount.parse()?;
        let from = RepoName::parse(from, None)?;
        // The caller must be able to pull the source itself, from where it stands: otherwise a
        // mount would copy what its role or the source registry's network rule keeps from it.
        let source = crate::web::client_ip(req);
        let may_read = crate::access::guard::may_read(app, grants, source, from.as_str()).await?;
        if may_read && uploads::mount(app, name, &digest, &from).await?.is_some() {
            return blob_created(name, &digest);
        }
    }
    let owner = grants.principal();
    if let Some(digest) = q.get("digest") {
        let digest: Digest = digest.parse()?;
        let chunk = Chunk { start: None, len: content_length(req)? };
        uploads::upload_whole(app, name, owner, &digest, chunk, body).await?;
        return blob_created(name, &digest);
    }
    let algorithm = match q.get("digest-algorithm") {
        Some(a) => a.parse::<Algorithm>()?,
        None => Algorithm::Sha256,
    };
    let session = uploads::start(app, name, owner, algorithm).await?;
    let mut headers = progress_headers(app, &session)?;
    if app.settings.chunk_min_length > 0 {
        headers
            .push((header::HeaderName::from_static("oci-chunk-min-length"), app.settings.chunk_min_length.to_string()));
    }
    empty(StatusCode::ACCEPTED, &headers)
}

/// `PATCH`: append a chunk (`Content-Range`) or a stream (none).
pub async fn patch(
    app: &App,
    name: &RepoName,
    id: &UploadId,
    req: &Head,
    body: ByteStream,
) -> Result<Response, OciError> {
    let owner = session_caller(app, name, id, req)?;
    let chunk = chunk_of(req)?;
    match uploads::append(app, name, id, owner, chunk, body).await {
        Ok(session) => empty(StatusCode::ACCEPTED, &progress_headers(app, &session)?),
        Err(e @ UploadError::OutOfOrder { .. }) => Err(with_progress(app, name, id, owner, e).await),
        Err(e) => Err(e.into()),
    }
}

/// A refused chunk's answer, carrying where the session stands (`Range`) and its `Location`
/// (with its `_state` token), so the client can resume without a guess.
async fn with_progress(app: &App, name: &RepoName, id: &UploadId, owner: &str, e: UploadError) -> OciError {
    let mut err = OciError::from(e);
    if let Ok(session) = uploads::status(app, name, id, owner).await {
        if let Ok(headers) = progress_headers(app, &session) {
            // `Range` is on the error already
            for (h, v) in headers.into_iter().filter(|(h, _)| *h != header::RANGE) {
                err = err.header(h, v);
            }
        }
    }
    err
}

/// `PUT ?digest=`: take an optional final chunk and finish the upload.
pub async fn put(
    app: &App,
    name: &RepoName,
    id: &UploadId,
    req: &Head,
    body: ByteStream,
) -> Result<Response, OciError> {
    let owner = session_caller(app, name, id, req)?;
    let digest: Digest = Query::of(req)
        .get("digest")
        .ok_or_else(|| OciError::new(ErrorCode::DigestInvalid, "PUT must name the blob's digest in ?digest="))?
        .parse()?;
    let chunk = chunk_of(req)?;
    uploads::complete(app, name, id, owner, &digest, chunk, body).await?;
    blob_created(name, &digest)
}

/// `GET`: how many bytes the session holds.
pub async fn status(app: &App, name: &RepoName, id: &UploadId, req: &Head) -> Result<Response, OciError> {
    let owner = session_caller(app, name, id, req)?;
    let session = uploads::status(app, name, id, owner).await?;
    empty(StatusCode::NO_CONTENT, &progress_headers(app, &session)?)
}

/// `DELETE`: cancel the session and drop its bytes.
pub async fn cancel(app: &App, name: &RepoName, id: &UploadId, req: &Head) -> Result<Response, OciError> {
    let owner = session_caller(app, name, id, req)?;
    uploads::cancel(app, name, id, owner).await?;
    empty(StatusCode::NO_CONTENT, &[])
}

fn blob_created(name: &RepoName, digest: &Digest) -> Result<Response, OciError> {
    empty(StatusCode::CREATED, &[(header::LOCATION, format!("/v2/{name}/blobs/{digest}")), digest_header(digest)])
}

/// The authenticated caller's grants (the guard put them there; every upload route needs push).
fn grants_of(req: &Head) -> Result<&Grants, OciError> {
    req.extensions
        .get::<Grants>()
        .ok_or_else(|| OciError::new(ErrorCode::Unauthorized, "an upload needs an authenticated caller"))
}

/// Who is continuing a session: the authenticated caller, who must also hold the session's
/// `_state` token when tokens are configured (minted for them when they opened it). Every
/// session route checks the same way, so no route is a way around the token.
fn session_caller<'a>(app: &App, name: &RepoName, id: &UploadId, req: &'a Head) -> Result<&'a str, OciError> {
    let caller = grants_of(req)?.principal();
    let Some(tokens) = &app.settings.upload_tokens else {
        return Ok(caller);
    };
    let q = Query::of(req);
    let token = q.get("_state").ok_or(TokenError::Missing)?;
    if tokens.verify(token, name, id, app.clock.now())? != caller {
        // a token of someone else's session: that session does not exist for this caller
        return Err(OciError::new(ErrorCode::BlobUploadUnknown, format!("upload {id} is not open in this repository")));
    }
    Ok(caller)
}

/// Where the client sends the session's next request: this host, or the upload gateway, with a
/// `_state` token when tokens are configured.
fn session_location(app: &App, session: &UploadSession) -> Result<String, OciError> {
    let base = app.settings.upload_gateway_url.as_deref().unwrap_or("").trim_end_matches('/');
    let mut location = format!("{base}/v2/{}/blobs/uploads/{}", session.repo, session.id);
    if let Some(tokens) = &app.settings.upload_tokens {
        let owner = session.owner.as_deref().unwrap_or_default();
        let token = tokens.mint(&session.repo, &session.id, owner, app.clock.now())?;
        location.push_str("?_state=");
        location.push_str(&token);
    }
    Ok(location)
}

/// `Location`, `Range` (inclusive end, `0-0` when empty, as docker expects) and the upload id.
fn progress_headers(app: &App, session: &UploadSession) -> Result<Vec<(header::HeaderName, String)>, OciError> {
    Ok(vec![
        (header::LOCATION, session_location(app, session)?),
        (header::RANGE, format!("0-{}", session.offset.saturating_sub(1))),
        (header::HeaderName::from_static("docker-upload-uuid"), session.id.to_string()),
    ])
}

fn content_length(req: &Head) -> Result<Option<u64>, OciError> {
    header_str(req, header::CONTENT_LENGTH)
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| OciError::new(ErrorCode::SizeInvalid, format!("Content-Length {v:?} is not a number")))
        })
        .transpose()
}

/// What the request declares: `Content-Range` gives start and length.
fn chunk_of(req: &Head) -> Result<Chunk, OciError> {
    match header_str(req, header::CONTENT_RANGE) {
        Some(h) => {
            // the spec answers a chunk it cannot place with 416, as for one out of order
            let r = ByteRange::parse_content_range(h).map_err(|e| {
                OciError::new(ErrorCode::BlobUploadInvalid, e.to_string()).status(StatusCode::RANGE_NOT_SATISFIABLE)
            })?;
            Ok(Chunk { start: Some(r.start), len: Some(r.len()) })
        }
        None => Ok(Chunk::default()),
    }
}
