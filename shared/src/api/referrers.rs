//! `GET /v2/<name>/referrers/<digest>[?artifactType=]`: the manifests that name `digest` as their
//! subject, as an OCI image index.

use http::{header, StatusCode};
use serde_json::{json, Map, Value};

use super::endpoint::{handler, Endpoint, Operation, Rule};
use super::error::OciError;
use super::query::{Head, Query};
use super::Route;
use crate::access::RepoAction;
use crate::app::App;
use crate::body::{Response, ResponseBody};
use crate::oci::manifest::OCI_INDEX;
use crate::oci::{Digest, RepoName};

/// `GET /v2/<name>/referrers/<digest>`: the manifests whose subject is a digest.
pub const LIST: Endpoint = Endpoint {
    name: "referrers",
    prefix: "/v2",
    suffix: "/referrers/{digest}",
    has_repository: true,
    operations: &[Operation::read("GET", Rule::Repo(RepoAction::View), "List the referrers of a manifest")],
    ports: &[],
    handler: handler!("referrers", Route::Referrers { name, digest } => |app, req, body| get(app, &name, &digest, &req).await),
};

/// Lists referrers; never 404s (an unknown subject has an empty list).
pub async fn get(app: &App, name: &RepoName, digest: &Digest, req: &Head) -> Result<Response, OciError> {
    let q = Query::of(req);
    let filter = q.get("artifactType").filter(|a| !a.is_empty());
    let records = app.meta.referrers(name, digest, filter).await?;
    let manifests: Vec<Value> = records
        .into_iter()
        .map(|r| {
            let mut d = Map::new();
            d.insert("mediaType".into(), r.media_type.into());
            d.insert("digest".into(), r.digest.to_string().into());
            d.insert("size".into(), r.size.into());
            if let Some(t) = r.artifact_type {
                d.insert("artifactType".into(), t.into());
            }
            if let Some(a) = r.annotations {
                d.insert("annotations".into(), Value::Object(a));
            }
            Value::Object(d)
        })
        .collect();
    let index = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
    let bytes = serde_json::to_vec(&index).map_err(|e| OciError::internal(&e))?;
    let mut builder = http::Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, OCI_INDEX)
        .header(header::CONTENT_LENGTH, bytes.len());
    if filter.is_some() {
        builder = builder.header("oci-filters-applied", "artifactType");
    }
    builder.body(ResponseBody::full(bytes)).map_err(|e| OciError::internal(&e))
}
