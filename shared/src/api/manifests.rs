//! `GET|HEAD|PUT|DELETE /v2/<name>/manifests/<reference>`: manifests served as the exact bytes
//! pushed, with their digest and stored media type.

use http::{header, Method, StatusCode};

use super::error::OciError;
use super::query::{digest_header, empty, header_str, Head, Query};
use crate::app::App;
use crate::body::{Response, ResponseBody};
use crate::oci::{Reference, RepoName, Tag};
use crate::registry::{manifests, pulls};
use crate::storage::ByteStream;

/// Serves a manifest; `HEAD` answers from metadata alone, and only a `GET` records a pull.
pub async fn get(app: &App, name: &RepoName, reference: &Reference, req: &Head) -> Result<Response, OciError> {
    let record = manifests::find(app, name, reference).await?;
    let builder = http::Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, &record.media_type)
        .header(header::CONTENT_LENGTH, record.size)
        .header(header::ETAG, format!("\"{}\"", record.digest))
        .header("docker-content-digest", record.digest.to_string());
    let body = if req.method == Method::HEAD {
        ResponseBody::Empty
    } else {
        let bytes = manifests::content(app, &record).await?;
        // a GET is a pull (a HEAD is not): recorded, debounced, never failing the answer
        pulls::record(app, &record).await;
        ResponseBody::full(bytes)
    };
    builder.body(body).map_err(|e| OciError::internal(&e))
}

/// Stores a manifest (`201 Created`), by tag or by digest with optional `?tag=` values.
pub async fn put(
    app: &App,
    name: &RepoName,
    reference: &Reference,
    req: &Head,
    body: ByteStream,
) -> Result<Response, OciError> {
    let tags = Query::of(req).all("tag").into_iter().map(Tag::parse).collect::<Result<Vec<_>, _>>()?;
    let content_type = header_str(req, header::CONTENT_TYPE).map(str::to_owned);
    let record = manifests::push(app, name, reference, tags, content_type.as_deref(), body).await?;
    let mut headers =
        vec![(header::LOCATION, format!("/v2/{name}/manifests/{}", record.digest)), digest_header(&record.digest)];
    if let Some(subject) = &record.subject {
        headers.push((header::HeaderName::from_static("oci-subject"), subject.to_string()));
    }
    empty(StatusCode::CREATED, &headers)
}

/// Deletes a tag, or a manifest with its tags (`202 Accepted`).
pub async fn delete(app: &App, name: &RepoName, reference: &Reference) -> Result<Response, OciError> {
    manifests::delete(app, name, reference).await?;
    empty(StatusCode::ACCEPTED, &[])
}
