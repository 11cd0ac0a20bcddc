//! `GET /v2/`, `GET /v2/_catalog` and `GET /v2/<name>/tags/list`, with `n`/`last` pagination
//! and a `Link` header to the next page.

use http::{header, StatusCode};
use serde_json::json;

use super::error::{ErrorCode, OciError};
use super::query::{json, Head, Query};
use crate::app::App;
use crate::body::Response;
use crate::metadata::Page;
use crate::oci::RepoName;

/// The version check every client starts with.
pub fn base() -> Result<Response, OciError> {
    json(StatusCode::OK, &json!({}), &[])
}

/// Repository names, paginated; repositories of registries that do not admit the caller's
/// address (public access off) are left out, as their contents would be refused.
pub async fn catalog(app: &App, req: &Head) -> Result<Response, OciError> {
    let q = Query::of(req);
    let n = q.page_size(app.settings.default_page_size)?;
    let mut page = app.meta.list_repositories(q.get("last"), n).await?;
    // the link continues after the last name read, shown or not
    let link = next_link("/v2/_catalog", &page, n);
    let source = crate::access::client_ip::of(req);
    let mut admitted: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    let mut shown = Vec::with_capacity(page.items.len());
    for name in page.items.drain(..) {
        let registry = crate::identity::registry::of_repository(&name).to_string();
        let ok = match admitted.get(&registry) {
            Some(ok) => *ok,
            None => {
                let ok = crate::access::guard::admits(app, &registry, source).await?;
                admitted.insert(registry, ok);
                ok
            }
        };
        if ok {
            shown.push(name);
        }
    }
    json(StatusCode::OK, &json!({ "repositories": shown }), &link)
}

/// Tags of one repository, paginated.
pub async fn tags(app: &App, name: &RepoName, req: &Head) -> Result<Response, OciError> {
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
