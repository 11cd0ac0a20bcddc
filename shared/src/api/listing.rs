//! `GET /v2/`, `GET /v2/_catalog` and `GET /v2/<name>/tags/list`, with `n`/`last` pagination
//! and a `Link` header to the next page.

use http::{header, StatusCode};
use serde_json::json;

use super::endpoint::{handler, Endpoint, Operation, Rule};
use super::error::{ErrorCode, OciError};
use super::query::{json, Head, PageSize, Query};
use super::Route;
use crate::access::RepoAction;
use crate::app::App;
use crate::body::Response;
use crate::metadata::Page;
use crate::oci::RepoName;

/// `GET /v2/`: the version check.
pub const BASE: Endpoint = Endpoint {
    name: "base",
    prefix: "/v2",
    suffix: "/",
    has_repository: false,
    operations: &[
        Operation::read("GET", Rule::SignedIn, "API version check"),
        Operation::read("HEAD", Rule::SignedIn, "API version check"),
    ],
    ports: &[],
    handler: handler!("base", Route::Base => |app, req, body| base()),
};

/// `GET /v2/_catalog`: repository names.
pub const CATALOG: Endpoint = Endpoint {
    name: "catalog",
    prefix: "/v2",
    suffix: "/_catalog",
    has_repository: false,
    operations: &[Operation::read("GET", Rule::Catalog, "List repositories").paged()],
    ports: &[],
    handler: handler!("catalog", Route::Catalog => |app, req, body| catalog(app, &req).await),
};

/// `GET /v2/<name>/tags/list`: a repository's tags.
pub const TAGS_LIST: Endpoint = Endpoint {
    name: "tags-list",
    prefix: "/v2",
    suffix: "/tags/list",
    has_repository: true,
    operations: &[Operation::read("GET", Rule::Repo(RepoAction::View), "List a repository's tags").paged()],
    ports: &[],
    handler: handler!("tags-list", Route::TagsList { name } => |app, req, body| tags(app, &name, &req).await),
};

/// The version check every client starts with.
pub fn base() -> Result<Response, OciError> {
    json(StatusCode::OK, &json!({}), &[])
}

/// Repository names, paginated; repositories of registries that do not admit the caller's
/// address (public access off) are left out, as their contents would be refused. A page is
/// filled from further reads, and its `Link` continues after the last name *shown*, so neither
/// the body nor the cursor names a hidden repository.
pub async fn catalog(app: &App, req: &Head) -> Result<Response, OciError> {
    let q = Query::of(req);
    let n = q.page_size(app.settings.default_page_size)?;
    let source = crate::web::client_ip(req);
    let mut admitted: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    let mut shown: Vec<String> = Vec::with_capacity(n);
    let mut cursor = q.get("last").map(str::to_string);
    let mut more = true;
    'pages: while more && shown.len() < n {
        let page = app.meta.list_repositories(cursor.as_deref(), n).await?;
        more = page.more;
        let read = page.items.len();
        for (i, name) in page.items.into_iter().enumerate() {
            let registry = crate::identity::registry::of_repository(&name).to_string();
            let ok = match admitted.get(&registry) {
                Some(ok) => *ok,
                None => {
                    let ok = crate::access::guard::admits(app, &registry, source).await?;
                    admitted.insert(registry, ok);
                    ok
                }
            };
            cursor = Some(name.clone());
            if ok {
                shown.push(name);
                if shown.len() == n {
                    more = more || i + 1 < read;
                    break 'pages;
                }
            }
        }
    }
    let page = Page { items: shown, more };
    let link = next_link("/v2/_catalog", &page, n);
    json(StatusCode::OK, &json!({ "repositories": page.items }), &link)
}

/// Tags of one repository, paginated.
pub async fn tags(app: &App, name: &RepoName, req: &Head) -> Result<Response, OciError> {
    if let Some(cache) = crate::cache::of_repository(app, name).await? {
        if let Some(path) = crate::cache::library_path(&cache, name) {
            return super::manifests::moved(app, req, &format!("/v2/{path}/tags/list"));
        }
    }
    let q = Query::of(req);
    let n = q.page_size(app.settings.default_page_size)?;
    let page = app
        .meta
        .list_tags(name, q.get("last"), n)
        .await?
        .ok_or_else(|| OciError::new(ErrorCode::NameUnknown, format!("repository {name} is not known")))?;
    let link = next_link(&format!("/v2/{name}/tags/list"), &page, n);
    json(StatusCode::OK, &json!({ "name": name.as_str(), "tags": page.items }), &link)
}

fn next_link(path: &str, page: &Page, n: usize) -> Vec<(header::HeaderName, String)> {
    match page.items.last() {
        Some(last) if page.more => vec![(header::LINK, format!("<{path}?n={n}&last={last}>; rel=\"next\""))],
        _ => vec![],
    }
}
