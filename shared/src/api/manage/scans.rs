//! `/api/v1/images/<name>/artifacts/<digest>/scan`: an artifact's vulnerability scan: start one,
//! stop it, read its status, summary and findings, or its report in Harbor's format. The logic
//! lives in [`crate::scan`]; this module reads requests and shapes answers.

use std::collections::BTreeSet;

use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{grants, invalid, object, read_json};
use crate::api::endpoint::{handler, Endpoint, Operation, Port, Rule};
use crate::api::query::{header_str, json as json_response, Head};
use crate::api::OciError;
use crate::api::Route;
use crate::app::App;
use crate::body::Response;
use crate::identity::Action;
use crate::oci::{Digest, RepoName};
use crate::scan::artifact::{self, ScanRecord};
use crate::scan::policy::{self, Allowlist, ScanPolicy};
use crate::scan::report::{self, REPORT_MEDIA_TYPE};
use crate::scan::severity::Severity;
use crate::scan::ScanError;
use crate::storage::ByteStream;

/// `GET|POST|DELETE /api/v1/images/<name>/artifacts/<digest>/scan`.
pub const SCAN: Endpoint = Endpoint {
    name: "api-artifact-scan",
    prefix: "/api/v1/images",
    suffix: "/artifacts/{digest}/scan",
    has_repository: true,
    operations: &[
        Operation::read(
            "GET",
            Rule::Role(Action::ViewArtifacts),
            "An artifact's scan: status, severity, total and fixable counts, findings (Accept the Harbor report \
             media type for the report)",
        ),
        Operation::change(
            "POST",
            Rule::Role(Action::PushImages),
            "Scan an artifact (refused while it is being scanned)",
            202,
        ),
        Operation::change("DELETE", Rule::Role(Action::PushImages), "Stop an artifact's running scan", 200),
    ],
    ports: &[Port::BlobsRead, Port::MetadataWrite, Port::JobsSend],
    handler: handler!("api-artifact-scan", Route::ApiArtifactScan { name, digest } => |app, req, body| {
        drop(body);
        scan(app, &req, &name, &digest).await
    }),
};

/// `GET|PUT /api/v1/registries/<registry>/scan-settings` (`_all`: the common allowlist).
pub const SETTINGS: Endpoint = Endpoint {
    name: "api-scan-settings",
    prefix: "/api/v1",
    suffix: "/registries/{registry}/scan-settings",
    has_repository: false,
    operations: &[
        Operation::read(
            "GET",
            Rule::Role(Action::ViewRegistries),
            "A registry's scan settings: auto scan on push, prevent pull, CVE allowlist (`_all`: the common allowlist)",
        ),
        Operation::change(
            "PUT",
            Rule::Role(Action::ManageRegistries),
            "Replace a registry's scan settings (`_all`: the common allowlist)",
            200,
        )
        .body("ScanSettings"),
    ],
    ports: &[Port::MetadataWrite],
    handler: handler!("api-scan-settings", Route::ApiScanSettings { registry } => |app, req, body| {
        settings(app, &req, &registry, body).await
    }),
};

/// The body of `PUT …/scan-settings`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsBody {
    #[serde(default)]
    scan_on_push: bool,
    #[serde(default)]
    prevent_pull: Option<String>,
    #[serde(default)]
    allowlist: Option<AllowlistBody>,
    /// `_all` only: none, hourly, daily, weekly or a cron expression
    #[serde(default)]
    schedule: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowlistBody {
    ids: String,
    #[serde(default)]
    expires_at: Option<i64>,
}

/// `GET|PUT …/scan-settings`.
pub async fn settings(app: &App, head: &Head, registry: &str, body: ByteStream) -> Result<Response, OciError> {
    let common = registry == policy::COMMON;
    if !common && crate::identity::registry::get(app.meta.as_ref(), registry).await?.is_none() {
        return Err(ScanError::NotFound(format!("registry {registry:?} does not exist")).into());
    }
    if head.method == Method::PUT {
        let body: SettingsBody = read_json(body).await?;
        let prevent_pull = match body.prevent_pull.as_deref() {
            None => None,
            Some(text) => Some(Severity::parse(text).filter(|s| *s > Severity::Unknown).ok_or_else(|| {
                ScanError::Invalid(format!(
                    "prevent_pull {:?} is not a severity: use Negligible, Low, Medium, High or Critical",
                    text.chars().take(40).collect::<String>()
                ))
            })?),
        };
        if common && (body.scan_on_push || prevent_pull.is_some()) {
            return Err(invalid(
                "_all holds the common allowlist and the scan schedule: scan_on_push and prevent_pull are per registry",
            ));
        }
        if !common && body.schedule.is_some() {
            return Err(invalid("the scan schedule is one global setting: set it on _all"));
        }
        let schedule = body.schedule.filter(|s| !s.trim().eq_ignore_ascii_case("none") && !s.trim().is_empty());
        if let Some(text) = &schedule {
            policy::schedule_cron(text)?;
        }
        let allowlist = match body.allowlist {
            None => None,
            Some(list) => Some(Allowlist { ids: policy::parse_ids(&list.ids)?, expires_at: list.expires_at }),
        };
        let new = ScanPolicy { scan_on_push: body.scan_on_push, prevent_pull, allowlist, schedule };
        policy::put(app, registry, &new).await?;
        if common {
            policy::set_schedule(app, new.schedule.as_deref()).await?;
        }
    }
    let current = policy::get(app, registry).await?;
    let mut view = serde_json::to_value(&current).map_err(|e| OciError::internal(&e))?;
    if common {
        // the next scheduled scan, as the schedule holds it
        let next = crate::schedule::get(app.meta.as_ref(), policy::SCHEDULE_ID).await?.map(|s| s.next_due);
        if let Value::Object(map) = &mut view {
            map.insert("schedule".into(), json!(current.schedule));
            map.insert("next_scan_at".into(), json!(next));
        }
    }
    object(StatusCode::OK, &view)
}

/// `GET|POST|DELETE …/scan`.
pub async fn scan(app: &App, head: &Head, repo: &RepoName, digest: &Digest) -> Result<Response, OciError> {
    match head.method {
        Method::POST => {
            let by = grants(head)?.principal().to_string();
            let record = artifact::start(app, repo, digest, &by).await?;
            object(StatusCode::ACCEPTED, &view(Some(&record), &BTreeSet::new()))
        }
        Method::DELETE => {
            let record = artifact::stop(app, repo, digest).await?;
            object(StatusCode::OK, &view(Some(&record), &allowed(app, repo).await?))
        }
        _ => {
            let Some(manifest) = app.meta.manifest(repo, digest).await? else {
                return Err(ScanError::NotFound(format!("artifact {repo}@{digest} does not exist")).into());
            };
            let record = artifact::latest(app, repo, digest).await?;
            let wants_report = header_str(head, http::header::ACCEPT)
                .is_some_and(|a| a.contains("application/vnd.security.vulnerability.report"));
            if !wants_report {
                return object(StatusCode::OK, &view(record.as_ref(), &allowed(app, repo).await?));
            }
            harbor_report(app, repo, digest, &manifest.media_type, record.as_ref()).await
        }
    }
}

/// The allowlist in force for `repo`'s registry.
async fn allowed(app: &App, repo: &RepoName) -> Result<BTreeSet<String>, OciError> {
    let own = policy::get(app, crate::identity::registry::of_repository(repo.as_str())).await?;
    Ok(policy::allowlist(app, &own).await?)
}

/// A scan as the API shows it: NCR's status, the summary (without allowlisted ids; every finding
/// is listed, each marked), and the findings.
fn view(record: Option<&ScanRecord>, allowed: &BTreeSet<String>) -> Value {
    let Some(record) = record else {
        return json!({ "status": "not_scanned" });
    };
    let summary = report::summarise(&record.findings, &|id| allowed.contains(id));
    // the findings are stored packed: the rest of the record is serialized without them
    let rest = record.clone_without_findings();
    let mut value = serde_json::to_value(&rest).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.remove("scan");
        let findings = record.findings.iter().map(|f| {
            let mut shown = json!(f);
            shown["allowlisted"] = json!(allowed.contains(&f.id));
            shown
        });
        map.insert("findings".into(), Value::Array(findings.collect()));
        map.insert("severity".into(), json!(summary.severity));
        map.insert("total".into(), json!(summary.total));
        map.insert("fixable".into(), json!(summary.fixable));
        map.insert("counts".into(), json!(summary.counts));
    }
    value
}

/// Harbor's v1.1 report of the latest finished scan.
async fn harbor_report(
    app: &App,
    repo: &RepoName,
    digest: &Digest,
    media_type: &str,
    record: Option<&ScanRecord>,
) -> Result<Response, OciError> {
    let Some(record) = record.filter(|r| r.succeeded_at.is_some()) else {
        return Err(crate::scan::ScanError::NotFound(format!("{repo}@{digest} has no finished scan")).into());
    };
    // descriptions and links come from the data the scan used, when it is still the current data
    let snapshot =
        crate::scan::data::existing(app).await.ok().flatten().filter(|s| Some(s.data.to_string()) == record.vulndb);
    // the OS release's shard and the language shards (a finding's details are in one of them)
    let mut db = crate::scan::vulndb::VulnDb::default();
    if let Some(snapshot) = snapshot {
        for bucket in [record.os.as_deref(), Some(crate::scan::report::PYPI_BUCKET)] {
            let shard = snapshot.shard(app, bucket).await.unwrap_or_default();
            for (id, details) in &shard.details {
                db.details.entry(id.clone()).or_insert_with(|| details.clone());
            }
        }
    }
    let generated_at = record.succeeded_at.map(crate::cron::rfc3339).unwrap_or_default();
    let digest_text = digest.to_string();
    let subject = report::Subject { repository: repo.as_str(), digest: &digest_text, media_type };
    let body = report::harbor_report(&subject, &record.findings, &db, &generated_at);
    let mut response = json_response(StatusCode::OK, &body, &[])?;
    if let Ok(v) = http::HeaderValue::from_str(REPORT_MEDIA_TYPE) {
        response.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    Ok(response)
}
