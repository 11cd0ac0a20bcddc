//! `/api/v1/caches…`: image caches (the source registries cache-type registries pull through).
//! The logic lives in [`crate::cache::source`]; this module reads requests and shapes answers.

use http::{Method, StatusCode};

use super::{grants, invalid, object, page_request, page_response_after, read_json};
use crate::api::endpoint::{handler, Endpoint, Operation, Port, Rule};
use crate::api::query::{empty, Head};
use crate::api::OciError;
use crate::api::Route;
use crate::app::App;
use crate::body::Response;
use crate::cache::source;
use crate::identity::Action;
use crate::storage::ByteStream;

/// `GET|POST /api/v1/caches`.
pub const CACHES: Endpoint = Endpoint {
    name: "api-caches",
    prefix: "/api/v1",
    suffix: "/caches",
    has_repository: false,
    operations: &[
        Operation::read("GET", Rule::Role(Action::ViewRegistries), "List image caches (never their secrets)").paged(),
        Operation::change(
            "POST",
            Rule::Admin,
            "Add an image cache: a source registry (NCR, ECR, ACR, GCR, Docker Hub, Docker registry, Harbor, Quay) \
             whose secret is stored encrypted",
            201,
        )
        .body("NewImageCache"),
    ],
    ports: &[Port::MetadataWrite],
    handler: handler!("api-caches", Route::ApiCaches => |app, req, body| caches(app, &req, body).await),
};

/// `GET|PATCH|DELETE /api/v1/caches/<cache>`.
pub const CACHE: Endpoint = Endpoint {
    name: "api-cache",
    prefix: "/api/v1",
    suffix: "/caches/{cache}",
    has_repository: false,
    operations: &[
        Operation::read("GET", Rule::Role(Action::ViewRegistries), "Show an image cache and the registries using it"),
        Operation::change("PATCH", Rule::Admin, "Change an image cache's source", 200).body("ImageCachePatch"),
        Operation::change("DELETE", Rule::Admin, "Delete an image cache no registry uses", 204),
    ],
    ports: &[Port::MetadataWrite],
    handler: handler!("api-cache", Route::ApiCache { cache } => |app, req, body| one_cache(app, &req, &cache, body).await),
};

/// `GET|POST /api/v1/caches`.
pub async fn caches(app: &App, head: &Head, body: ByteStream) -> Result<Response, OciError> {
    if head.method == Method::GET {
        let page = page_request(head)?;
        let (items, more) = source::list(app, page.after.as_deref(), page.limit).await?;
        let mut views = Vec::with_capacity(items.len());
        for cache in &items {
            views.extend(visible_view(app, head, cache).await?);
        }
        let next = if more { items.last().map(|c| c.name.clone()) } else { None };
        return page_response_after(head, &views, next);
    }
    let new: source::NewCache = read_json(body).await?;
    let by = grants(head)?.principal().to_string();
    let created = source::create(app, new, &by).await?;
    object(StatusCode::CREATED, &source::view(app, &created).await?)
}

/// `GET|PATCH|DELETE /api/v1/caches/<cache>`.
pub async fn one_cache(app: &App, head: &Head, name: &str, body: ByteStream) -> Result<Response, OciError> {
    match head.method {
        Method::GET => {
            let (cache, _) = source::must_get(app, name).await?;
            let view = visible_view(app, head, &cache).await?;
            object(
                StatusCode::OK,
                &view.ok_or_else(|| {
                    OciError::from(crate::cache::CacheError::NotFound(format!("image cache {name:?}")))
                })?,
            )
        }
        Method::PATCH => {
            let patch: source::CachePatch = read_json(body).await?;
            let empty_patch = patch.kind.is_none()
                && patch.url.is_none()
                && patch.access_id.is_none()
                && patch.access_secret.is_none()
                && patch.skip_tls_verify.is_none()
                && patch.description.is_none();
            if empty_patch {
                return Err(invalid(
                    "nothing to change: give type, url, access_id, access_secret, skip_tls_verify or description",
                ));
            }
            let changed = source::update(app, name, patch).await?;
            object(StatusCode::OK, &source::view(app, &changed).await?)
        }
        _ => {
            source::delete(app, name).await?;
            empty(StatusCode::NO_CONTENT, &[])
        }
    }
}

/// A cache as the caller may see it: a user whose role covers every registry sees every cache;
/// a user of some registries sees only the caches those registries use, naming only those, so
/// nobody learns another team's registries or source accounts through a cache.
async fn visible_view(
    app: &App,
    head: &Head,
    cache: &source::StoredCache,
) -> Result<Option<source::CacheView>, OciError> {
    let user = crate::access::guard::user_of(app, grants(head)?).await?;
    let mut view = source::view(app, cache).await?;
    if user.registries.is_some() {
        view.registries.retain(|r| user.covers(r));
        if view.registries.is_empty() {
            return Ok(None);
        }
    }
    Ok(Some(view))
}
