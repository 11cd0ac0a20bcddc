//! `GET|HEAD|DELETE /v2/<name>/blobs/<digest>`: blob reads with `Range` support, and unlinking.

use http::{header, Method, StatusCode};

use super::endpoint::{handler, Endpoint, Operation, Port, Rule};
use super::error::OciError;
use super::query::{digest_header, empty, header_str, Head};
use super::Route;
use crate::access::RepoAction;
use crate::app::App;
use crate::body::{Response, ResponseBody};
use crate::cache::pull::ServedBlob;
use crate::oci::{Digest, RepoName};
use crate::registry::blobs;

/// `GET|HEAD /v2/<name>/blobs/<digest>`: blob bytes, or a redirect to them.
pub const GET: Endpoint = Endpoint {
    name: "blob-get",
    prefix: "/v2",
    suffix: "/blobs/{digest}",
    has_repository: true,
    operations: &[
        Operation::read("GET", Rule::Repo(RepoAction::Pull), "Fetch a blob"),
        Operation::read("HEAD", Rule::Repo(RepoAction::View), "Check a blob"),
    ],
    // a pull through a cache-type registry stores the blob it fetches and may queue its caching
    ports: &[Port::BlobsRead, Port::BlobsWrite, Port::MetadataWrite, Port::JobsSend],
    handler: handler!("blob-get", Route::BlobGet { name, digest } => |app, req, body| get(app, &name, &digest, &req).await),
};

/// `DELETE /v2/<name>/blobs/<digest>`: unlink a blob (its bytes go with garbage collection).
pub const DELETE: Endpoint = Endpoint {
    name: "blob-delete",
    prefix: "/v2",
    suffix: "/blobs/{digest}",
    has_repository: true,
    operations: &[Operation::change("DELETE", Rule::Repo(RepoAction::Delete), "Unlink a blob", 202)],
    ports: &[Port::MetadataWrite, Port::JobsSend],
    handler: handler!("blob-delete", Route::BlobDelete { name, digest } => |app, req, body| delete(app, &name, &digest).await),
};

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
    if let Some(cache) = crate::cache::of_repository(app, name).await? {
        if let Some(path) = crate::cache::library_path(&cache, name) {
            return super::manifests::moved(app, req, &format!("/v2/{path}/blobs/{digest}"));
        }
        if app.meta.linked_blob(name, digest).await?.is_none() {
            let redirects = app.blobs.presign_read(digest, app.settings.blob_redirect_expiry).await?.is_some();
            if let ServedBlob::Streaming { len, stream } =
                crate::cache::pull::blob(app, &cache, name, digest, redirects).await?
            {
                // a HEAD lets the caching run on without a reader
                if req.method == Method::HEAD {
                    return common(len)
                        .status(StatusCode::OK)
                        .body(ResponseBody::Empty)
                        .map_err(|e| OciError::internal(&e));
                }
                return common(len)
                    .status(StatusCode::OK)
                    .body(ResponseBody::Stream(stream, len))
                    .map_err(|e| OciError::internal(&e));
            }
        }
    }
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
