//! `/v2/<name>/blobs/uploads/…`: opening, appending to, finishing, inspecting and cancelling
//! upload sessions, plus monolithic uploads and cross-repository mounts.

use http::{header, StatusCode};

use super::error::{ErrorCode, OciError};
use super::query::{digest_header, empty, header_str, Head, Query};
use crate::access::{Grants, RepoAction};
use crate::app::App;
use crate::body::Response;
use crate::metadata::UploadSession;
use crate::oci::{Algorithm, ByteRange, Digest, RepoName, UploadId};
use crate::registry::uploads::{self, Chunk};
use crate::storage::ByteStream;
use crate::upload_token::TokenError;

/// `POST`: mount from another repository, take a whole blob (`?digest=`), or open a session.
pub async fn start(app: &App, name: &RepoName, req: &Head, body: ByteStream) -> Result<Response, OciError> {
    let q = Query::of(req);
    if let (Some(mount), Some(from)) = (q.get("mount"), q.get("from")) {
        let digest: Digest = mount.parse()?;
        let from = RepoName::parse(from, None)?;
        // Mounting reveals nothing but existence; still, the source must be visible to the caller.
        let may_see_source = req.extensions.get::<Grants>().is_some_and(|g| g.allows(from.as_str(), RepoAction::View));
        if may_see_source && uploads::mount(app, name, &digest, &from).await?.is_some() {
            return blob_created(name, &digest);
        }
    }
    if let Some(digest) = q.get("digest") {
        let digest: Digest = digest.parse()?;
        let chunk = Chunk { start: None, len: content_length(req)? };
        uploads::upload_whole(app, name, &digest, chunk, body).await?;
        return blob_created(name, &digest);
    }
    let algorithm = match q.get("digest-algorithm") {
        Some(a) => a.parse::<Algorithm>()?,
        None => Algorithm::Sha256,
    };
    let session = uploads::start(app, name, algorithm).await?;
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
    check_token(app, name, id, req)?;
    let chunk = chunk_of(req)?;
    let session = uploads::append(app, name, id, chunk, body).await?;
    empty(StatusCode::ACCEPTED, &progress_headers(app, &session)?)
}

/// `PUT ?digest=`: take an optional final chunk and finish the upload.
pub async fn put(
    app: &App,
    name: &RepoName,
    id: &UploadId,
    req: &Head,
    body: ByteStream,
) -> Result<Response, OciError> {
    let digest: Digest = Query::of(req)
        .get("digest")
        .ok_or_else(|| OciError::new(ErrorCode::DigestInvalid, "PUT must name the blob's digest in ?digest="))?
        .parse()?;
    let chunk = chunk_of(req)?;
    uploads::complete(app, name, id, &digest, chunk, body).await?;
    blob_created(name, &digest)
}

/// `GET`: how many bytes the session holds.
pub async fn status(app: &App, name: &RepoName, id: &UploadId, req: &Head) -> Result<Response, OciError> {
    check_token(app, name, id, req)?;
    let session = uploads::status(app, name, id).await?;
    empty(StatusCode::NO_CONTENT, &progress_headers(app, &session)?)
}

/// `DELETE`: cancel the session and drop its bytes.
pub async fn cancel(app: &App, name: &RepoName, id: &UploadId, req: &Head) -> Result<Response, OciError> {
    check_token(app, name, id, req)?;
    uploads::cancel(app, name, id).await?;
    empty(StatusCode::NO_CONTENT, &[])
}

fn blob_created(name: &RepoName, digest: &Digest) -> Result<Response, OciError> {
    empty(StatusCode::CREATED, &[(header::LOCATION, format!("/v2/{name}/blobs/{digest}")), digest_header(digest)])
}

/// Refuses an upload-session request without a valid `_state` token when tokens are configured.
fn check_token(app: &App, name: &RepoName, id: &UploadId, req: &Head) -> Result<(), OciError> {
    let Some(tokens) = &app.settings.upload_tokens else {
        return Ok(());
    };
    let q = Query::of(req);
    let token = q.get("_state").ok_or(TokenError::Missing)?;
    Ok(tokens.verify(token, name, id, app.clock.now())?)
}

/// Where the client sends the session's next request: this host, or the upload gateway, with a
/// `_state` token when tokens are configured.
fn session_location(app: &App, session: &UploadSession) -> Result<String, OciError> {
    let base = app.settings.upload_gateway_url.as_deref().unwrap_or("").trim_end_matches('/');
    let mut location = format!("{base}/v2/{}/blobs/uploads/{}", session.repo, session.id);
    if let Some(tokens) = &app.settings.upload_tokens {
        let token = tokens.mint(&session.repo, &session.id, app.clock.now())?;
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
            let r = ByteRange::parse_content_range(h)?;
            Ok(Chunk { start: Some(r.start), len: Some(r.len()) })
        }
        None => Ok(Chunk::default()),
    }
}
