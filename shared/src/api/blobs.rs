//! `GET|HEAD|DELETE /v2/<name>/blobs/<digest>`: blob reads with `Range` support, and unlinking.

use http::{header, Method, StatusCode};

use super::error::OciError;
use super::query::{digest_header, empty, header_str, Head};
use crate::app::App;
use crate::body::{Response, ResponseBody};
use crate::oci::{Digest, RepoName};
use crate::registry::blobs;

/// Streams a blob (or a range of it); `HEAD` answers from metadata alone.
pub async fn get(app: &App, name: &RepoName, digest: &Digest, req: &Head) -> Result<Response, OciError> {
    let common = |len: u64| {
        http::Response::builder()
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, len)
            .header(header::ACCEPT_RANGES, "bytes")
            .header(header::ETAG, format!("\"{digest}\""))
            .header("docker-content-digest", digest.to_string())
    };
    if req.method == Method::HEAD {
        let size = blobs::size(app, name, digest).await?;
        return common(size).status(StatusCode::OK).body(ResponseBody::Empty).map_err(|e| OciError::internal(&e));
    }
    if let Some(url) = blobs::redirect(app, name, digest).await? {
        return empty(StatusCode::TEMPORARY_REDIRECT, &[(header::LOCATION, url), digest_header(digest)]);
    }
    let read = blobs::read(app, name, digest, header_str(req, header::RANGE)).await?;
    let response = match read.range {
        Some(r) => common(r.len())
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_RANGE, format!("bytes {}-{}/{}", r.start, r.end, read.size))
            .body(ResponseBody::Stream(read.stream, r.len())),
        None => common(read.size).status(StatusCode::OK).body(ResponseBody::Stream(read.stream, read.size)),
    };
    response.map_err(|e| OciError::internal(&e))
}

/// Unlinks a blob from the repository (`202 Accepted`).
pub async fn delete(app: &App, name: &RepoName, digest: &Digest) -> Result<Response, OciError> {
    blobs::delete(app, name, digest).await?;
    empty(StatusCode::ACCEPTED, &[digest_header(digest)])
}
