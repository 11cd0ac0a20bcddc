//! `GET|HEAD|PUT|DELETE /v2/<name>/manifests/<reference>`: manifests served as the exact bytes
//! pushed, with their digest and stored media type.

use http::{header, Method, StatusCode};

use super::endpoint::{handler, Endpoint, Operation, Port, Rule};
use super::error::OciError;
use super::query::{digest_header, empty, header_str, Head, Query};
use super::Route;
use crate::access::RepoAction;
use crate::app::App;
use crate::body::{Response, ResponseBody};
use crate::cache::pull::ServedManifest;
use crate::events::EventType;
use crate::oci::{Reference, RepoName, Tag};
use crate::registry::{manifests, pulls};
use crate::storage::ByteStream;

/// A `301` to `path` (a Docker Hub cache's short name, moved under `library/`), as the client
/// names it: without the cache registry on a mirror host.
pub fn moved(app: &App, req: &Head, path: &str) -> Result<Response, OciError> {
    let mirrored = crate::access::token_service::mirror_registry(app, req)
        .and_then(|registry| path.strip_prefix("/v2/").and_then(|rest| rest.strip_prefix(registry)))
        .and_then(|rest| rest.strip_prefix('/'))
        .map(|rest| format!("/v2/{rest}"));
    let mut location = mirrored.unwrap_or_else(|| path.to_string());
    // a tags list's paging (`?n=&last=`) goes along
    if let Some(query) = req.uri.query() {
        location = format!("{location}?{query}");
    }
    empty(StatusCode::MOVED_PERMANENTLY, &[(header::LOCATION, location)])
}

/// `GET|HEAD /v2/<name>/manifests/<reference>`: a manifest's exact bytes (and its pull time).
pub const GET: Endpoint = Endpoint {
    name: "manifest-get",
    prefix: "/v2",
    suffix: "/manifests/{reference}",
    has_repository: true,
    operations: &[
        Operation::read("GET", Rule::Repo(RepoAction::Pull), "Fetch a manifest"),
        Operation::read("HEAD", Rule::Repo(RepoAction::View), "Check a manifest"),
    ],
    // a pull through a cache-type registry stores the manifest it fetches
    ports: &[Port::BlobsRead, Port::BlobsWrite, Port::MetadataWrite, Port::JobsSend],
    handler: handler!("manifest-get", Route::ManifestGet { name, reference } => |app, req, body| {
        get(app, &name, &reference, &req).await
    }),
};

/// `PUT /v2/<name>/manifests/<reference>`: store a manifest (its storage use is recounted by a job).
pub const PUT: Endpoint = Endpoint {
    name: "manifest-put",
    prefix: "/v2",
    suffix: "/manifests/{reference}",
    has_repository: true,
    operations: &[Operation::change("PUT", Rule::Repo(RepoAction::Push), "Store a manifest", 201)],
    ports: &[Port::BlobsRead, Port::BlobsWrite, Port::MetadataWrite, Port::JobsSend],
    handler: handler!("manifest-put", Route::ManifestPut { name, reference } => |app, req, body| {
        put(app, &name, &reference, &req, body).await
    }),
};

/// `DELETE /v2/<name>/manifests/<reference>`: delete a manifest or untag.
pub const DELETE: Endpoint = Endpoint {
    name: "manifest-delete",
    prefix: "/v2",
    suffix: "/manifests/{reference}",
    has_repository: true,
    operations: &[Operation::change("DELETE", Rule::Repo(RepoAction::Delete), "Delete a manifest or a tag", 202)],
    // a deleted signature's subject is looked at again (its other signatures read)
    ports: &[Port::BlobsRead, Port::MetadataWrite, Port::JobsSend],
    handler: handler!("manifest-delete", Route::ManifestDelete { name, reference } => |app, req, body| {
        delete(app, &name, &reference).await
    }),
};

/// Serves a manifest; `HEAD` answers from metadata alone, and only a `GET` records a pull. In a
/// cache-type registry the source decides what a tag names ([`crate::cache::pull`]).
pub async fn get(app: &App, name: &RepoName, reference: &Reference, req: &Head) -> Result<Response, OciError> {
    let record = match crate::cache::of_repository(app, name).await? {
        None => {
            let record = manifests::find(app, name, reference).await?;
            // prevent pull: only a GET fetches the image (a HEAD only checks it, as docker's
            // and cosign's do before a push or a signature)
            if req.method == Method::GET {
                crate::scan::policy::check_pull(app, name, &record).await?;
                let grants = req.extensions.get::<crate::access::Grants>();
                crate::trust::gate::check_pull(app, name, &record, grants).await?;
            }
            record
        }
        Some(cache) => {
            if let Some(path) = crate::cache::library_path(&cache, name) {
                return moved(app, req, &format!("/v2/{path}/manifests/{reference}"));
            }
            match crate::cache::pull::manifest(app, &cache, name, reference).await? {
                ServedManifest::Cached(record) => *record,
                ServedManifest::Fetched { digest, media_type, bytes } => {
                    let builder = http::Response::builder()
                        .status(StatusCode::OK)
                        .header(header::CONTENT_TYPE, media_type)
                        .header(header::CONTENT_LENGTH, bytes.len())
                        .header(header::ETAG, format!("\"{digest}\""))
                        .header("docker-content-digest", digest.to_string());
                    let body = if req.method == Method::HEAD { ResponseBody::Empty } else { ResponseBody::full(bytes) };
                    return builder.body(body).map_err(|e| OciError::internal(&e));
                }
            }
        }
    };
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
        if crate::outbox::wants_pulls(app, crate::identity::registry::of_repository(name.as_str())).await {
            let reference = match reference {
                Reference::Tag(tag) => Some(tag.as_str()),
                Reference::Digest(_) => None,
            };
            let event = crate::outbox::artifact(app, EventType::PullArtifact, &record, reference);
            crate::outbox::notify(app, event).await;
        }
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
    let mut named: Vec<String> = tags.iter().map(|t| t.as_str().to_string()).collect();
    if let Reference::Tag(tag) = reference {
        named.push(tag.as_str().to_string());
    }
    // a signature tag moved to another manifest: its image is looked at again after the push,
    // and counts as never looked at should that fail
    crate::trust::status::unsettle(app, name, &crate::trust::status::subjects_of_tags(&named)).await?;
    let record = manifests::push(app, name, reference, tags, content_type.as_deref(), body).await?;
    crate::trust::status::after_push(app, name, &record, &named).await;
    crate::scan::policy::after_push(app, name, reference, &record).await;
    let mut headers =
        vec![(header::LOCATION, format!("/v2/{name}/manifests/{}", record.digest)), digest_header(&record.digest)];
    if let Some(subject) = &record.subject {
        headers.push((header::HeaderName::from_static("oci-subject"), subject.to_string()));
    }
    empty(StatusCode::CREATED, &headers)
}

/// Deletes a tag, or a manifest with its tags (`202 Accepted`).
pub async fn delete(app: &App, name: &RepoName, reference: &Reference) -> Result<Response, OciError> {
    let signed = crate::trust::status::signed_by(app, name, reference).await?;
    crate::trust::status::unsettle(app, name, &signed).await?;
    manifests::delete(app, name, reference).await?;
    // a deleted signature no longer signs its subject
    crate::trust::status::refresh_all(app, name, &signed).await;
    empty(StatusCode::ACCEPTED, &[])
}
