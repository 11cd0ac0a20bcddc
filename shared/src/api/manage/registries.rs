//! `/api/v1/registries…`: create, list, show, change and delete registries, and list their images.

use http::StatusCode;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{forced, grants, invalid, object, page_request, page_response, page_response_after, read_json};
use crate::access::guard::user_of;
use crate::api::endpoint::{handler, Endpoint, Operation, Port, Rule};
use crate::api::query::{empty, Head};
use crate::api::Route;
use crate::api::{ErrorCode, OciError};
use crate::app::App;
use crate::body::Response;
use crate::identity::registry;
use crate::identity::Action;
use crate::oci::RepoName;
use crate::storage::ByteStream;
use crate::usage;

/// `GET|POST /api/v1/registries`.
pub const REGISTRIES: Endpoint = Endpoint {
    name: "api-registries",
    prefix: "/api/v1",
    suffix: "/registries",
    has_repository: false,
    operations: &[
        Operation::read("GET", Rule::Role(Action::ViewRegistries), "List registries").paged(),
        Operation::change("POST", Rule::Admin, "Create a registry", 201).body("CreateRegistry"),
    ],
    ports: &[Port::MetadataWrite],
    handler: handler!("api-registries", Route::ApiRegistries => |app, req, body| {
        if req.method == http::Method::GET { list(app, &req).await } else { create(app, &req, body).await }
    }),
};

/// `GET|PATCH|DELETE /api/v1/registries/<registry>` (a forced delete deletes its images, whose
/// storage use is then recounted by jobs).
pub const REGISTRY: Endpoint = Endpoint {
    name: "api-registry",
    prefix: "/api/v1",
    suffix: "/registries/{registry}",
    has_repository: false,
    operations: &[
        Operation::read("GET", Rule::Role(Action::ViewRegistries), "Show a registry"),
        Operation::change(
            "PATCH",
            Rule::Role(Action::ManageRegistries),
            "Change a registry's public access and private networks",
            200,
        )
        .body("ChangeRegistry"),
        Operation::change(
            "DELETE",
            Rule::Role(Action::ManageRegistries),
            "Delete a registry (force=true deletes its images too)",
            204,
        ),
    ],
    // deleting one may do whatever a manifest delete does (so read blobs, as it does to look at
    // signatures left)
    ports: &[Port::BlobsRead, Port::MetadataWrite, Port::JobsSend],
    handler: handler!("api-registry", Route::ApiRegistry { registry } => |app, req, body| match req.method {
        http::Method::GET => show(app, &registry).await,
        http::Method::PATCH => change(app, &registry, body).await,
        _ => delete(app, &req, &registry).await,
    }),
};

/// `GET /api/v1/registries/<registry>/images` (an image whose usage document is missing is
/// counted and its document written: a metadata write).
pub const IMAGES: Endpoint = Endpoint {
    name: "api-images",
    prefix: "/api/v1",
    suffix: "/registries/{registry}/images",
    has_repository: false,
    operations: &[Operation::read(
        "GET",
        Rule::Role(Action::ViewImages),
        "List a registry's images with artifact count, size, last push and stored bytes",
    )
    .paged()],
    ports: &[Port::BlobsRead, Port::MetadataWrite],
    handler: handler!("api-images", Route::ApiImages { registry } => |app, req, body| images(app, &req, &registry).await),
};

/// The body of `POST /api/v1/registries`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRegistry {
    name: String,
    #[serde(default = "yes")]
    public_access: bool,
    #[serde(default)]
    private_networks: Vec<IpNet>,
    /// an image cache: the registry becomes its pull-through (cache-type) registry
    #[serde(default)]
    cache: Option<String>,
}

fn yes() -> bool {
    true
}

/// The body of `PATCH /api/v1/registries/<name>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeRegistry {
    public_access: Option<bool>,
    private_networks: Option<Vec<IpNet>>,
}

/// A registry as shown by itself (create, show, change): its settings and the storage its
/// images use, from the usage documents.
#[derive(Debug, Serialize)]
struct RegistryView {
    #[serde(flatten)]
    registry: registry::Registry,
    /// bytes of the blobs linked into its images
    storage_bytes: u64,
    /// images (repositories) it holds
    image_count: u64,
}

/// A registry with its storage use.
async fn view(app: &App, registry: registry::Registry) -> Result<RegistryView, OciError> {
    let (storage_bytes, image_count) = usage::registry_usage(app, &registry.name).await?;
    Ok(RegistryView { registry, storage_bytes, image_count })
}

/// `GET`: registries the caller's role covers.
pub async fn list(app: &App, head: &Head) -> Result<Response, OciError> {
    let page = page_request(head)?;
    let user = user_of(app, grants(head)?).await?;
    let (items, more) = registry::list(app.meta.as_ref(), page.after.as_deref(), page.limit).await?;
    let next = if more { items.last().map(|r| r.name.clone()) } else { None };
    let visible: Vec<_> = items.into_iter().filter(|r| user.covers(&r.name)).collect();
    page_response_after(head, &visible, next)
}

/// `POST`: creates a registry.
pub async fn create(app: &App, head: &Head, body: ByteStream) -> Result<Response, OciError> {
    let req: CreateRegistry = read_json(body).await?;
    let who = grants(head)?.principal().to_string();
    let Some(cache) = req.cache else {
        let created = registry::create(
            app.meta.as_ref(),
            &req.name,
            req.public_access,
            req.private_networks,
            &who,
            app.clock.now(),
        )
        .await?;
        app.access.registries.forget(&created.name);
        return object(StatusCode::CREATED, &view(app, created).await?);
    };
    registry::validate_name(&req.name)?;
    // the claim comes first, so a delete of the cache that runs meanwhile sees this registry
    crate::cache::source::claim(app, &cache, &req.name).await?;
    let record = registry::Registry {
        name: req.name.clone(),
        created_at: app.clock.now(),
        created_by: who,
        public_access: req.public_access,
        private_networks: req.private_networks,
        cache: Some(cache.clone()),
    };
    let created = match registry::create_record(app.meta.as_ref(), record).await {
        Ok(created) => created,
        // the name is taken: the claim (if any) is the existing registry's, and stays
        Err(e @ crate::identity::IdentityError::AlreadyExists { .. }) => return Err(e.into()),
        Err(e) => {
            if let Err(release) = crate::cache::source::release(app, &cache, &req.name).await {
                tracing::warn!(registry = %req.name, error = %release, "could not take back a cache claim");
            }
            return Err(e.into());
        }
    };
    app.access.registries.forget(&created.name);
    crate::cache::source::add_default_cleanup(app, &created.name).await?;
    object(StatusCode::CREATED, &view(app, created).await?)
}

/// `GET`: one registry, with the bytes its images store and how many images it holds.
pub async fn show(app: &App, name: &str) -> Result<Response, OciError> {
    let found = registry::get(app.meta.as_ref(), name)
        .await?
        .ok_or_else(|| OciError::new(ErrorCode::NotFound, format!("registry {name:?} does not exist")))?;
    object(StatusCode::OK, &view(app, found).await?)
}

/// `PATCH`: changes public access and private networks.
pub async fn change(app: &App, name: &str, body: ByteStream) -> Result<Response, OciError> {
    let req: ChangeRegistry = read_json(body).await?;
    if req.public_access.is_none() && req.private_networks.is_none() {
        return Err(invalid("nothing to change: give public_access and/or private_networks"));
    }
    let changed = registry::set_access(app.meta.as_ref(), name, req.public_access, req.private_networks).await?;
    app.access.registries.forget(name);
    object(StatusCode::OK, &view(app, changed).await?)
}

/// `DELETE [?force=true]`: deletes a registry; one that holds images needs `force`, which
/// deletes the images first.
pub async fn delete(app: &App, head: &Head, name: &str) -> Result<Response, OciError> {
    let force = forced(head)?;
    if registry::get(app.meta.as_ref(), name).await?.is_none() {
        return Err(OciError::new(ErrorCode::NotFound, format!("registry {name:?} does not exist")));
    }
    let images = image_names(app, name, None, usize::MAX).await?.0;
    if !images.is_empty() && !force {
        return Err(OciError::new(
            ErrorCode::Conflict,
            format!("registry {name:?} still holds {} image(s); delete them first or pass force=true", images.len()),
        ));
    }
    for image in &images {
        crate::registry::artifacts::delete_image(app, image).await?;
    }
    let cache = registry::get(app.meta.as_ref(), name).await?.and_then(|r| r.cache);
    registry::remove(app.meta.as_ref(), name).await?;
    if let Some(cache) = cache {
        crate::cache::source::release(app, &cache, name).await?;
    }
    // a registry created again later starts without the old one's rules and cycle
    crate::policy::cleanup::forget(app.meta.as_ref(), name).await?;
    crate::policy::protection::forget(app.meta.as_ref(), name).await?;
    crate::webhook::policy::forget(app, name).await?;
    crate::replication::policy::forget(app, name).await?;
    crate::scan::policy::forget(app, name).await?;
    crate::trust::settings::forget(app, name).await?;
    app.access.registries.forget(name);
    empty(StatusCode::NO_CONTENT, &[])
}

/// Repository names in registry `name` (after `after`, at most `limit`), and whether more exist.
pub async fn image_names(
    app: &App,
    name: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<RepoName>, bool), OciError> {
    let prefix = format!("{name}/");
    let mut cursor = after.map(str::to_string).unwrap_or_else(|| prefix.clone());
    let mut out = vec![];
    loop {
        let page = app.meta.list_repositories(Some(&cursor), 1000).await?;
        for item in &page.items {
            if !item.starts_with(&prefix) {
                return Ok((out, false));
            }
            if out.len() == limit {
                return Ok((out, true));
            }
            out.push(RepoName::parse(item, None)?);
        }
        match page.items.last() {
            Some(last) if page.more => cursor = last.clone(),
            _ => return Ok((out, false)),
        }
    }
}

/// An image as listed.
#[derive(Debug, Serialize)]
struct ImageSummary {
    name: String,
    artifact_count: usize,
    size: u64,
    last_push: Option<i64>,
    /// bytes of the blobs linked into it, from its usage document
    storage_bytes: u64,
    /// manifests in it, from its usage document
    artifacts: u64,
}

/// `GET /api/v1/registries/<name>/images`: images with artifact count, size, last push and
/// stored bytes.
pub async fn images(app: &App, head: &Head, name: &str) -> Result<Response, OciError> {
    if registry::get(app.meta.as_ref(), name).await?.is_none() {
        return Err(OciError::new(ErrorCode::NotFound, format!("registry {name:?} does not exist")));
    }
    let page = page_request(head)?;
    let (names, more) = image_names(app, name, page.after.as_deref(), page.limit).await?;
    let mut items = Vec::with_capacity(names.len());
    for repo in names {
        let usage = super::artifacts::usage(app, &repo).await?;
        let stored = crate::usage::image_usage(app, &repo).await?;
        items.push(ImageSummary {
            name: repo.to_string(),
            artifact_count: usage.artifacts,
            size: usage.bytes,
            last_push: usage.last_push,
            storage_bytes: stored.map_or(0, |s| s.bytes),
            artifacts: stored.map_or(0, |s| s.artifacts),
        });
    }
    page_response(head, &items, more, |i| i.name.clone())
}
