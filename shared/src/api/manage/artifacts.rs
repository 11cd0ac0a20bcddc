//! `/api/v1/images/<name>…`: artifacts (with platforms, tags and referrers), tags (with search,
//! and tagging without docker), and deleting an artifact or a whole image.

use std::collections::{BTreeSet, HashSet};

use futures_util::StreamExt;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{invalid, object, page_request, page_response, read_json};
use crate::api::endpoint::{handler, Endpoint, Operation, Port, Rule};
use crate::api::query::{empty, Head, Query};
use crate::api::Route;
use crate::api::{ErrorCode, OciError};
use crate::app::App;
use crate::body::Response;
use crate::identity::Action;
use crate::metadata::ManifestRecord;
use crate::oci::{Digest, Reference, RepoName, Tag};
use crate::policy::protection;
use crate::registry::artifacts;
use crate::registry::manifests;
use crate::storage::ByteStream;

/// `DELETE /api/v1/images/<name>`.
pub const IMAGE: Endpoint = Endpoint {
    name: "api-image",
    prefix: "/api/v1/images",
    suffix: "",
    has_repository: true,
    operations: &[Operation::change(
        "DELETE",
        Rule::Role(Action::DeleteImages),
        "Delete an image with all its artifacts and tags",
        200,
    )],
    // whatever a manifest delete may do (so read blobs, as it does to look at signatures left)
    ports: &[Port::BlobsRead, Port::MetadataWrite, Port::JobsSend],
    handler: handler!("api-image", Route::ApiImage { name } => |app, req, body| delete_whole(app, &name).await),
};

/// `GET /api/v1/images/<name>/artifacts`.
pub const ARTIFACTS: Endpoint = Endpoint {
    name: "api-artifacts",
    prefix: "/api/v1/images",
    suffix: "/artifacts",
    has_repository: true,
    operations: &[Operation::read("GET", Rule::Role(Action::ViewArtifacts), "List an image's artifacts")
        .paged()
        .query(&[("q", "only the artifacts whose digest or one of whose tags contains this text")])],
    ports: &[Port::BlobsRead],
    handler: handler!("api-artifacts", Route::ApiArtifacts { name } => |app, req, body| list(app, &req, &name).await),
};

/// `GET|DELETE /api/v1/images/<name>/artifacts/<digest>`.
pub const ARTIFACT: Endpoint = Endpoint {
    name: "api-artifact",
    prefix: "/api/v1/images",
    suffix: "/artifacts/{digest}",
    has_repository: true,
    operations: &[
        Operation::read(
            "GET",
            Rule::Role(Action::ViewArtifacts),
            "Show an artifact: digest, media type, size, platforms, times, tags, referrers",
        ),
        Operation::change(
            "DELETE",
            Rule::Role(Action::DeleteArtifacts),
            "Delete an artifact and its referrers (refused while an index lists it)",
            204,
        ),
    ],
    ports: &[Port::BlobsRead, Port::MetadataWrite, Port::JobsSend],
    handler: handler!("api-artifact", Route::ApiArtifact { name, digest } => |app, req, body| {
        if req.method == http::Method::GET { show(app, &name, &digest).await } else { delete(app, &name, &digest).await }
    }),
};

/// `GET /api/v1/images/<name>/tags`.
pub const TAGS: Endpoint = Endpoint {
    name: "api-tags",
    prefix: "/api/v1/images",
    suffix: "/tags",
    has_repository: true,
    operations: &[Operation::read("GET", Rule::Role(Action::ViewTags), "List an image's tags (q= searches)").paged()],
    ports: &[],
    handler: handler!("api-tags", Route::ApiTags { name } => |app, req, body| tags(app, &req, &name).await),
};

/// `PUT|DELETE /api/v1/images/<name>/tags/<tag>`.
pub const TAG: Endpoint = Endpoint {
    name: "api-tag",
    prefix: "/api/v1/images",
    suffix: "/tags/{tag}",
    has_repository: true,
    operations: &[
        Operation::change("PUT", Rule::Role(Action::ManageTags), "Point a tag at an artifact of the image", 200)
            .body("PutTag"),
        Operation::change("DELETE", Rule::Role(Action::ManageTags), "Delete a tag", 204),
    ],
    ports: &[Port::BlobsRead, Port::MetadataWrite, Port::JobsSend],
    handler: handler!("api-tag", Route::ApiTag { name, tag } => |app, req, body| {
        if req.method == http::Method::PUT { put_tag(app, &name, &tag, body).await } else { delete_tag(app, &name, &tag).await }
    }),
};

/// Largest config blob read to find an image's platform.
const MAX_CONFIG_BYTES: u64 = 256 * 1024;

/// What an image holds.
#[derive(Debug, Default)]
pub struct Usage {
    /// manifests (artifacts) in it
    pub artifacts: usize,
    /// bytes of its manifests and the distinct blobs they reference
    pub bytes: u64,
    /// when the latest artifact was pushed
    pub last_push: Option<i64>,
}

/// Counts an image's artifacts and bytes.
pub async fn usage(app: &App, repo: &RepoName) -> Result<Usage, OciError> {
    let manifests = manifests::all_of(app.meta.as_ref(), repo).await?;
    let mut usage = Usage { artifacts: manifests.len(), ..Usage::default() };
    let mut seen = HashSet::new();
    for m in &manifests {
        usage.bytes += m.size;
        usage.last_push = usage.last_push.max(Some(m.pushed_at));
        for blob in &m.blobs {
            if seen.insert(blob.clone()) {
                usage.bytes += app.meta.linked_blob(repo, blob).await?.unwrap_or(0);
            }
        }
    }
    Ok(usage)
}

/// A platform an artifact runs on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
struct Platform {
    os: String,
    architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<String>,
}

impl Platform {
    fn of(v: &Value) -> Option<Platform> {
        Some(Platform {
            os: v.get("os")?.as_str()?.to_string(),
            architecture: v.get("architecture")?.as_str()?.to_string(),
            variant: v.get("variant").and_then(|x| x.as_str()).map(str::to_string),
        })
    }
}

/// A referrer as listed with its subject.
#[derive(Debug, Serialize)]
struct ReferrerSummary {
    digest: String,
    artifact_type: Option<String>,
}

/// An artifact as the management API shows it.
#[derive(Debug, Serialize)]
struct Artifact {
    digest: String,
    media_type: String,
    artifact_type: Option<String>,
    size: u64,
    platforms: Vec<Platform>,
    pushed_at: i64,
    pulled_at: Option<i64>,
    tags: Vec<String>,
    subject: Option<String>,
    referrers: Vec<ReferrerSummary>,
    /// the guide's "Authentication" column
    signature: SignatureView,
}

/// Whether an artifact is signed, how, and under which of its registry's keys a signature
/// verifies (keys removed since are left out).
#[derive(Debug, Serialize)]
struct SignatureView {
    signed: bool,
    verified: bool,
    signatures: u32,
    shapes: Vec<crate::trust::signature::Shape>,
    verified_keys: Vec<String>,
    /// signed indexes listing the artifact (their signatures cover it)
    signed_indexes: Vec<String>,
    checked_at: Option<i64>,
}

/// The signature view of `m`.
async fn signature_view(app: &App, repo: &RepoName, m: &ManifestRecord) -> Result<SignatureView, OciError> {
    use crate::trust::status;
    let loaded = crate::trust::settings::get(app, crate::identity::registry::of_repository(repo.as_str())).await?;
    let found = match m.signatures.as_deref().and_then(status::decode) {
        Some(s) => s,
        // never looked at (stored before signatures were): looked at now, not recorded (a listing
        // writes nothing; the next push, signature or key change records it)
        None => status::inspect(app, repo, &m.digest).await?,
    };
    let verified_keys = found.trusted_keys(&loaded);
    Ok(SignatureView {
        signed: found.signed(),
        verified: !verified_keys.is_empty(),
        signatures: found.signatures,
        shapes: found.shapes,
        verified_keys,
        signed_indexes: found.signed_parents.iter().map(|p| p.index.clone()).collect(),
        checked_at: (found.checked_at > 0).then_some(found.checked_at),
    })
}

async fn describe(app: &App, repo: &RepoName, m: ManifestRecord) -> Result<Artifact, OciError> {
    let tags = app.meta.tags_of(repo, &m.digest).await?;
    let referrers = app
        .meta
        .referrers(repo, &m.digest, None)
        .await?
        .into_iter()
        .map(|r| ReferrerSummary { digest: r.digest.to_string(), artifact_type: r.artifact_type })
        .collect();
    let platforms = platforms(app, &m).await;
    let signature = signature_view(app, repo, &m).await?;
    Ok(Artifact {
        digest: m.digest.to_string(),
        media_type: m.media_type.clone(),
        artifact_type: m.artifact_type.clone(),
        size: m.size,
        platforms,
        pushed_at: m.pushed_at,
        pulled_at: m.pulled_at,
        tags,
        subject: m.subject.as_ref().map(|d| d.to_string()),
        referrers,
        signature,
    })
}

/// Platforms of an index (its entries) or an image (its config); empty when unknown.
async fn platforms(app: &App, m: &ManifestRecord) -> Vec<Platform> {
    let Ok(bytes) = manifests::content(app, m).await else { return vec![] };
    let Ok(doc) = serde_json::from_slice::<Value>(&bytes) else { return vec![] };
    if let Some(entries) = doc.get("manifests").and_then(|v| v.as_array()) {
        let set: BTreeSet<Platform> = entries.iter().filter_map(|e| e.get("platform").and_then(Platform::of)).collect();
        return set.into_iter().collect();
    }
    let config = doc.get("config");
    let is_image_config = config
        .and_then(|c| c.get("mediaType"))
        .and_then(|t| t.as_str())
        .is_some_and(|t| t.ends_with("container.image.v1+json") || t == "application/vnd.oci.image.config.v1+json");
    let Some(digest) =
        config.and_then(|c| c.get("digest")).and_then(|d| d.as_str()).and_then(|d| d.parse::<Digest>().ok())
    else {
        return vec![];
    };
    if !is_image_config || app.blobs.stat(&digest).await.ok().flatten().is_none_or(|n| n > MAX_CONFIG_BYTES) {
        return vec![];
    }
    let Ok(mut stream) = app.blobs.read(&digest, None).await else { return vec![] };
    let mut buf = Vec::new();
    while let Some(Ok(chunk)) = stream.next().await {
        buf.extend_from_slice(&chunk);
    }
    serde_json::from_slice::<Value>(&buf).ok().as_ref().and_then(Platform::of).into_iter().collect()
}

fn repository_unknown(repo: &RepoName) -> OciError {
    OciError::new(ErrorCode::NotFound, format!("image {repo} does not exist"))
}

/// `GET /api/v1/images/<name>/artifacts`.
pub async fn list(app: &App, head: &Head, repo: &RepoName) -> Result<Response, OciError> {
    let page = page_request(head)?;
    if !app.meta.repository_exists(repo).await? {
        return Err(repository_unknown(repo));
    }
    let search = Query::of(head).get("q").unwrap_or("").to_string();
    if search.is_empty() {
        let (records, more) = app.meta.list_manifests(repo, page.after.as_deref(), page.limit).await?;
        let mut items = Vec::with_capacity(records.len());
        for m in records {
            items.push(describe(app, repo, m).await?);
        }
        return page_response(head, &items, more, |a| a.digest.clone());
    }
    // a search walks the image's artifacts in digest order until a page of matches is found
    let mut after = page.after.clone();
    let mut items = vec![];
    let mut more = false;
    'pages: loop {
        let (records, chunk_more) = app.meta.list_manifests(repo, after.as_deref(), 1000).await?;
        let last = records.last().map(|m| m.digest.to_string());
        for m in records {
            let hit = m.digest.to_string().contains(&search)
                || app.meta.tags_of(repo, &m.digest).await?.iter().any(|t| t.contains(&search));
            if !hit {
                continue;
            }
            if items.len() == page.limit {
                more = true;
                break 'pages;
            }
            items.push(describe(app, repo, m).await?);
        }
        match last {
            Some(last) if chunk_more => after = Some(last),
            _ => break,
        }
    }
    page_response(head, &items, more, |a| a.digest.clone())
}

/// `GET /api/v1/images/<name>/artifacts/<digest>`.
pub async fn show(app: &App, repo: &RepoName, digest: &Digest) -> Result<Response, OciError> {
    let m = app
        .meta
        .manifest(repo, digest)
        .await?
        .ok_or_else(|| OciError::new(ErrorCode::NotFound, format!("artifact {repo}@{digest} does not exist")))?;
    object(StatusCode::OK, &describe(app, repo, m).await?)
}

/// `DELETE /api/v1/images/<name>/artifacts/<digest>`.
pub async fn delete(app: &App, repo: &RepoName, digest: &Digest) -> Result<Response, OciError> {
    if app.meta.manifest(repo, digest).await?.is_none() {
        return Err(OciError::new(ErrorCode::NotFound, format!("artifact {repo}@{digest} does not exist")));
    }
    protection::check_artifact_delete(app, repo, digest).await?;
    let signed = crate::trust::status::signed_by(app, repo, &Reference::Digest(digest.clone())).await?;
    crate::trust::status::unsettle(app, repo, &signed).await?;
    artifacts::delete_with_referrers(app, repo, digest).await?;
    // a deleted signature no longer signs its subject
    crate::trust::status::refresh_all(app, repo, &signed).await;
    empty(StatusCode::NO_CONTENT, &[])
}

/// `DELETE /api/v1/images/<name>`.
pub async fn delete_whole(app: &App, repo: &RepoName) -> Result<Response, OciError> {
    if !app.meta.repository_exists(repo).await? {
        return Err(repository_unknown(repo));
    }
    let deleted = artifacts::delete_image(app, repo).await?;
    object(StatusCode::OK, &serde_json::json!({ "image": repo.as_str(), "deleted_artifacts": deleted }))
}

/// A tag as listed.
#[derive(Debug, Serialize)]
struct TagSummary {
    name: String,
    digest: Option<String>,
}

/// `GET /api/v1/images/<name>/tags[?q=search]`.
pub async fn tags(app: &App, head: &Head, repo: &RepoName) -> Result<Response, OciError> {
    let page = page_request(head)?;
    let q = Query::of(head);
    let search = q.get("q").unwrap_or("").to_string();
    let mut after = page.after.clone();
    let mut items = vec![];
    let mut more = false;
    'pages: loop {
        let Some(chunk) = app.meta.list_tags(repo, after.as_deref(), 1000).await? else {
            return Err(repository_unknown(repo));
        };
        for name in &chunk.items {
            if !name.contains(&search) {
                continue;
            }
            if items.len() == page.limit {
                more = true;
                break 'pages;
            }
            items.push(name.clone());
        }
        match chunk.items.last() {
            Some(last) if chunk.more => after = Some(last.clone()),
            _ => break,
        }
    }
    let mut out = Vec::with_capacity(items.len());
    for name in items {
        let digest = match Tag::parse(&name) {
            Ok(tag) => app.meta.resolve_tag(repo, &tag).await?.map(|m| m.digest.to_string()),
            Err(_) => None,
        };
        out.push(TagSummary { name, digest });
    }
    page_response(head, &out, more, |t| t.name.clone())
}

/// The body of `PUT /api/v1/images/<name>/tags/<tag>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutTag {
    digest: String,
}

/// `PUT`: points a tag at an artifact already in the image.
pub async fn put_tag(app: &App, repo: &RepoName, tag: &Tag, body: ByteStream) -> Result<Response, OciError> {
    let req: PutTag = read_json(body).await?;
    let digest: Digest = req.digest.parse().map_err(|e| invalid(format!("digest: {e}")))?;
    if let Some(cache) = crate::cache::of_repository(app, repo).await? {
        // a cache registry's tags are its source's: a tag set here would outlive the source's
        return Err(OciError::new(
            crate::api::ErrorCode::Denied,
            format!("{repo} is in an image cache of {:?}: its tags follow the source and cannot be set", cache.name),
        ));
    }
    let signed = crate::trust::status::subjects_of_tags(&[tag.to_string()]);
    crate::trust::status::unsettle(app, repo, &signed).await?;
    artifacts::tag(app, repo, tag, &digest).await?;
    crate::trust::status::refresh_all(app, repo, &signed).await;
    object(StatusCode::OK, &TagSummary { name: tag.to_string(), digest: Some(digest.to_string()) })
}

/// `DELETE`: deletes a tag (the artifact stays).
pub async fn delete_tag(app: &App, repo: &RepoName, tag: &Tag) -> Result<Response, OciError> {
    let signed = crate::trust::status::subjects_of_tags(&[tag.to_string()]);
    crate::trust::status::unsettle(app, repo, &signed).await?;
    artifacts::untag(app, repo, tag).await?;
    crate::trust::status::refresh_all(app, repo, &signed).await;
    empty(StatusCode::NO_CONTENT, &[])
}
