//! THE route table: every route is one `Route` variant, parsed once from the method and path, and
//! declared once as an [`Endpoint`] next to its handler ([`ENDPOINTS`]); under Lambda one function
//! serves it, named by [`Route::name`].
//!
//! Paths are parsed here rather than by a path-pattern router because a repository name may span
//! several segments before `/blobs/` or `/manifests/`, which neither axum's matcher nor API
//! Gateway's greedy variables can express.

use http::Method;

use super::endpoint::Endpoint;
use super::error::{ErrorCode, OciError};
use super::{blobs, console, listing, manage, manifests, referrers, token, uploads};
use crate::oci::{Digest, Reference, RepoName, Tag, UploadId};
use crate::web::decode;

/// Every route Berth serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET|POST /auth/token`: the token endpoint (Docker registry token flow).
    Token,
    /// `GET /v2/`: API version check.
    Base,
    /// `GET /v2/_catalog`: repository list.
    Catalog,
    /// `GET /v2/<name>/tags/list`: tag list.
    TagsList {
        /// repository
        name: RepoName,
    },
    /// `GET|HEAD /v2/<name>/manifests/<reference>`.
    ManifestGet {
        /// repository
        name: RepoName,
        /// tag or digest
        reference: Reference,
    },
    /// `PUT /v2/<name>/manifests/<reference>`.
    ManifestPut {
        /// repository
        name: RepoName,
        /// tag or digest
        reference: Reference,
    },
    /// `DELETE /v2/<name>/manifests/<reference>`.
    ManifestDelete {
        /// repository
        name: RepoName,
        /// tag or digest
        reference: Reference,
    },
    /// `GET|HEAD /v2/<name>/blobs/<digest>`.
    BlobGet {
        /// repository
        name: RepoName,
        /// blob
        digest: Digest,
    },
    /// `DELETE /v2/<name>/blobs/<digest>`.
    BlobDelete {
        /// repository
        name: RepoName,
        /// blob
        digest: Digest,
    },
    /// `POST /v2/<name>/blobs/uploads/`: open a session, upload whole, or mount.
    UploadStart {
        /// repository
        name: RepoName,
    },
    /// `PATCH /v2/<name>/blobs/uploads/<id>`: append a chunk or a stream.
    UploadPatch {
        /// repository
        name: RepoName,
        /// session
        id: UploadId,
    },
    /// `PUT /v2/<name>/blobs/uploads/<id>?digest=`: finish.
    UploadPut {
        /// repository
        name: RepoName,
        /// session
        id: UploadId,
    },
    /// `GET /v2/<name>/blobs/uploads/<id>`: progress.
    UploadStatus {
        /// repository
        name: RepoName,
        /// session
        id: UploadId,
    },
    /// `DELETE /v2/<name>/blobs/uploads/<id>`: cancel.
    UploadCancel {
        /// repository
        name: RepoName,
        /// session
        id: UploadId,
    },
    /// `GET /v2/<name>/referrers/<digest>`: manifests whose subject is `digest`.
    Referrers {
        /// repository
        name: RepoName,
        /// subject
        digest: Digest,
    },
    /// `GET|POST /api/v1/registries`: list or create registries.
    ApiRegistries,
    /// `GET|PATCH|DELETE /api/v1/registries/<registry>`: show, change access of, or delete a registry.
    ApiRegistry {
        /// registry name
        registry: String,
    },
    /// `GET /api/v1/registries/<registry>/images`: images of a registry.
    ApiImages {
        /// registry name
        registry: String,
    },
    /// `DELETE /api/v1/images/<name>`: delete a whole image.
    ApiImage {
        /// repository
        name: RepoName,
    },
    /// `GET /api/v1/images/<name>/artifacts`: artifacts of an image.
    ApiArtifacts {
        /// repository
        name: RepoName,
    },
    /// `GET|DELETE /api/v1/images/<name>/artifacts/<digest>`: show or delete one artifact.
    ApiArtifact {
        /// repository
        name: RepoName,
        /// artifact
        digest: Digest,
    },
    /// `GET|POST|DELETE /api/v1/images/<name>/artifacts/<digest>/scan`: an artifact's vulnerability scan.
    ApiArtifactScan {
        /// repository
        name: RepoName,
        /// artifact
        digest: Digest,
    },
    /// `GET /api/v1/images/<name>/tags`: tags of an image, with search.
    ApiTags {
        /// repository
        name: RepoName,
    },
    /// `PUT|DELETE /api/v1/images/<name>/tags/<tag>`: point a tag at an artifact, or delete it.
    ApiTag {
        /// repository
        name: RepoName,
        /// tag
        tag: Tag,
    },
    /// `GET|POST /api/v1/users`: list or create users.
    ApiUsers,
    /// `GET|PATCH|DELETE /api/v1/users/<user>`: show, change the role of, or delete a user.
    ApiUser {
        /// user name
        user: String,
    },
    /// `GET|POST /api/v1/users/<user>/keys`: list or create access keys.
    ApiKeys {
        /// user name
        user: String,
    },
    /// `DELETE /api/v1/users/<user>/keys/<key>`: revoke an access key.
    ApiKey {
        /// user name
        user: String,
        /// access key id
        key: String,
    },
    /// `POST /api/v1/users/<user>/keys/<key>/rotate`: replace an access key's secret.
    ApiKeyRotate {
        /// user name
        user: String,
        /// access key id
        key: String,
    },
    /// `GET /api/v1/audit`: the audit log.
    ApiAudit,
    /// `GET /api/v1/openapi.json`: the management API's OpenAPI document.
    ApiOpenApi,
    /// `GET /console/<asset>`: the web console's static files (`/console/` is its page).
    Console {
        /// the file asked for (`index.html` for the page itself)
        asset: String,
    },
    /// `GET|POST /api/v1/registries/<registry>/cleanup/rules`: list or add image cleanup rules.
    ApiCleanupRules {
        /// registry name
        registry: String,
    },
    /// `PATCH|DELETE /api/v1/registries/<registry>/cleanup/rules/<rule>`: enable/disable or delete a rule.
    ApiCleanupRule {
        /// registry name
        registry: String,
        /// rule id (`c1`)
        rule: String,
    },
    /// `GET|PUT|DELETE /api/v1/registries/<registry>/cleanup/schedule`: the cleanup cycle (cron).
    ApiCleanupSchedule {
        /// registry name
        registry: String,
    },
    /// `GET|POST /api/v1/registries/<registry>/cleanup/runs`: cleanup history, or start a (test) run.
    ApiCleanupRuns {
        /// registry name
        registry: String,
    },
    /// `GET /api/v1/registries/<registry>/cleanup/runs/<run>`: one cleanup run with its decisions.
    ApiCleanupRun {
        /// registry name
        registry: String,
        /// run id
        run: String,
    },
    /// `GET|POST /api/v1/registries/<registry>/protection/rules`: list or add image protection rules.
    ApiProtectionRules {
        /// registry name
        registry: String,
    },
    /// `PATCH|DELETE /api/v1/registries/<registry>/protection/rules/<rule>`: enable/disable or delete a rule.
    ApiProtectionRule {
        /// registry name
        registry: String,
        /// rule id (`p1`)
        rule: String,
    },
    /// `GET|POST /api/v1/gc/runs`: garbage-collection runs, or start one.
    ApiGcRuns,
    /// `GET /api/v1/gc/runs/<run>`: one garbage-collection run.
    ApiGcRun {
        /// run id
        run: String,
    },
    /// `GET|POST /api/v1/registries/<registry>/webhooks`: list or create webhooks (`_all`: registry-wide).
    ApiWebhooks {
        /// registry name, or `_all`
        registry: String,
    },
    /// `GET|PATCH|DELETE /api/v1/registries/<registry>/webhooks/<webhook>`: show, change or delete one.
    ApiWebhook {
        /// registry name, or `_all`
        registry: String,
        /// webhook id
        webhook: String,
    },
    /// `POST …/webhooks/<webhook>/test`: send a test ping now.
    ApiWebhookTest {
        /// registry name, or `_all`
        registry: String,
        /// webhook id
        webhook: String,
    },
    /// `GET …/webhooks/<webhook>/deliveries`: the delivery log.
    ApiWebhookDeliveries {
        /// registry name, or `_all`
        registry: String,
        /// webhook id
        webhook: String,
    },
    /// `POST …/webhooks/<webhook>/deliveries/<delivery>/redeliver`: queue a delivery again.
    ApiWebhookRedeliver {
        /// registry name, or `_all`
        registry: String,
        /// webhook id
        webhook: String,
        /// delivery id
        delivery: String,
    },
    /// `GET|PUT /api/v1/registries/<registry>/scan-settings`: scan settings (`_all`: the common allowlist).
    ApiScanSettings {
        /// registry name, or `_all`
        registry: String,
    },
    /// `GET|PUT /api/v1/registries/<registry>/trust`: the registry's trust mode and keys.
    ApiTrust {
        /// registry name
        registry: String,
    },
    /// `GET|POST /api/v1/registries/<registry>/trust/keys`: list or add trusted public keys.
    ApiTrustKeys {
        /// registry name
        registry: String,
    },
    /// `GET|DELETE /api/v1/registries/<registry>/trust/keys/<id>`: show or remove one key.
    ApiTrustKey {
        /// registry name
        registry: String,
        /// key id (`sha256:<hex>`)
        key: String,
    },
    /// `GET|POST /api/v1/caches`: list or add image caches.
    ApiCaches,
    /// `GET|PATCH|DELETE /api/v1/caches/<cache>`: show, change or delete one.
    ApiCache {
        /// cache name
        cache: String,
    },
    /// `GET|POST /api/v1/registries/<registry>/replication-targets`: list or add targets (`_all`: shared).
    ApiReplicationTargets {
        /// registry name, or `_all`
        registry: String,
    },
    /// `GET|PATCH|DELETE …/replication-targets/<target>`: show, change or delete one.
    ApiReplicationTarget {
        /// registry name, or `_all`
        registry: String,
        /// target id
        target: String,
    },
    /// `GET|POST /api/v1/registries/<registry>/replications`: list or create replications.
    ApiReplications {
        /// registry name
        registry: String,
    },
    /// `GET|PATCH|DELETE …/replications/<replication>`: show, change or delete one.
    ApiReplication {
        /// registry name
        registry: String,
        /// replication id
        replication: String,
    },
    /// `POST …/replications/<replication>/run`: run it now.
    ApiReplicationRun {
        /// registry name
        registry: String,
        /// replication id
        replication: String,
    },
    /// `GET …/replications/<replication>/executions`: its history.
    ApiReplicationExecutions {
        /// registry name
        registry: String,
        /// replication id
        replication: String,
    },
    /// `GET …/replications/<replication>/executions/<execution>`: one execution.
    ApiReplicationExecution {
        /// registry name
        registry: String,
        /// replication id
        replication: String,
        /// execution id
        execution: String,
    },
    /// `GET …/executions/<execution>/tasks`: an execution's per-artifact tasks.
    ApiReplicationTasks {
        /// registry name
        registry: String,
        /// replication id
        replication: String,
        /// execution id
        execution: String,
    },
}

/// Declares the route table once: [`ENDPOINTS`], [`DECLARATIONS`], [`Route::endpoint`] and
/// [`Route::declaration`] all come from this one list of `variant => endpoint` pairs.
macro_rules! route_table {
    ($($variant:pat => $endpoint:path,)*) => {
        /// How many routes there are.
        pub const ROUTE_COUNT: usize = [$(stringify!($endpoint),)*].len();

        /// Every route's endpoint, handler included, in table order: one Lambda function, Terraform
        /// route and event file each.
        pub const ENDPOINTS: [&Endpoint; ROUTE_COUNT] = [$(&$endpoint,)*];

        /// Every route's declaration without its handler, in table order: what the OpenAPI
        /// document and other readers of the table use, so they link no handler.
        pub const DECLARATIONS: [&Endpoint; ROUTE_COUNT] = [$(&$endpoint.declaration(),)*];

        impl Route {
            /// The route's endpoint with its handler: what `berth serve` dispatches to.
            pub fn endpoint(&self) -> &'static Endpoint {
                match self {
                    $($variant => &$endpoint,)*
                }
            }

            /// The route's declaration (access rules, audit, ports) without its handler: what
            /// parsing and the access check read, in every process.
            pub fn declaration(&self) -> &'static Endpoint {
                match self {
                    $($variant => {
                        const DECLARED: Endpoint = $endpoint.declaration();
                        &DECLARED
                    })*
                }
            }
        }
    };
}

route_table! {
    Route::Token => token::TOKEN,
    Route::Base => listing::BASE,
    Route::Catalog => listing::CATALOG,
    Route::TagsList { .. } => listing::TAGS_LIST,
    Route::ManifestGet { .. } => manifests::GET,
    Route::ManifestPut { .. } => manifests::PUT,
    Route::ManifestDelete { .. } => manifests::DELETE,
    Route::BlobGet { .. } => blobs::GET,
    Route::BlobDelete { .. } => blobs::DELETE,
    Route::UploadStart { .. } => uploads::START,
    Route::UploadPatch { .. } => uploads::PATCH,
    Route::UploadPut { .. } => uploads::PUT,
    Route::UploadStatus { .. } => uploads::STATUS,
    Route::UploadCancel { .. } => uploads::CANCEL,
    Route::Referrers { .. } => referrers::LIST,
    Route::ApiRegistries => manage::registries::REGISTRIES,
    Route::ApiRegistry { .. } => manage::registries::REGISTRY,
    Route::ApiImages { .. } => manage::registries::IMAGES,
    Route::ApiImage { .. } => manage::artifacts::IMAGE,
    Route::ApiArtifacts { .. } => manage::artifacts::ARTIFACTS,
    Route::ApiArtifact { .. } => manage::artifacts::ARTIFACT,
    Route::ApiTags { .. } => manage::artifacts::TAGS,
    Route::ApiTag { .. } => manage::artifacts::TAG,
    Route::ApiUsers => manage::users::USERS,
    Route::ApiUser { .. } => manage::users::USER,
    Route::ApiKeys { .. } => manage::users::KEYS,
    Route::ApiKey { .. } => manage::users::KEY,
    Route::ApiKeyRotate { .. } => manage::users::KEY_ROTATE,
    Route::ApiAudit => manage::audit::AUDIT,
    Route::ApiOpenApi => manage::openapi::OPENAPI,
    Route::Console { .. } => console::CONSOLE,
    Route::ApiCleanupRules { .. } => manage::policies::CLEANUP_RULES,
    Route::ApiCleanupRule { .. } => manage::policies::CLEANUP_RULE,
    Route::ApiCleanupSchedule { .. } => manage::policies::CLEANUP_SCHEDULE,
    Route::ApiCleanupRuns { .. } => manage::policies::CLEANUP_RUNS,
    Route::ApiCleanupRun { .. } => manage::policies::CLEANUP_RUN,
    Route::ApiProtectionRules { .. } => manage::policies::PROTECTION_RULES,
    Route::ApiProtectionRule { .. } => manage::policies::PROTECTION_RULE,
    Route::ApiGcRuns => manage::gc::GC_RUNS,
    Route::ApiGcRun { .. } => manage::gc::GC_RUN,
    Route::ApiWebhooks { .. } => manage::webhooks::WEBHOOKS,
    Route::ApiWebhook { .. } => manage::webhooks::WEBHOOK,
    Route::ApiWebhookTest { .. } => manage::webhooks::WEBHOOK_TEST,
    Route::ApiWebhookDeliveries { .. } => manage::webhooks::WEBHOOK_DELIVERIES,
    Route::ApiWebhookRedeliver { .. } => manage::webhooks::WEBHOOK_REDELIVER,
    Route::ApiReplicationTargets { .. } => manage::replications::TARGETS,
    Route::ApiReplicationTarget { .. } => manage::replications::TARGET,
    Route::ApiReplications { .. } => manage::replications::REPLICATIONS,
    Route::ApiReplication { .. } => manage::replications::REPLICATION,
    Route::ApiReplicationRun { .. } => manage::replications::REPLICATION_RUN,
    Route::ApiReplicationExecutions { .. } => manage::replications::EXECUTIONS,
    Route::ApiReplicationExecution { .. } => manage::replications::EXECUTION,
    Route::ApiReplicationTasks { .. } => manage::replications::TASKS,
    Route::ApiCaches => manage::caches::CACHES,
    Route::ApiCache { .. } => manage::caches::CACHE,
    Route::ApiArtifactScan { .. } => manage::scans::SCAN,
    Route::ApiScanSettings { .. } => manage::scans::SETTINGS,
    Route::ApiTrust { .. } => manage::trust::TRUST,
    Route::ApiTrustKeys { .. } => manage::trust::KEYS,
    Route::ApiTrustKey { .. } => manage::trust::KEY,
}

/// The names of all routes, in table order.
pub const ROUTE_NAMES: [&str; ROUTE_COUNT] = {
    let mut names = [""; ROUTE_COUNT];
    let mut i = 0;
    while i < ROUTE_COUNT {
        names[i] = ENDPOINTS[i].name;
        i += 1;
    }
    names
};

impl Route {
    /// The route's name: its function crate, binary, Terraform key and event file.
    pub fn name(&self) -> &'static str {
        self.declaration().name
    }

    /// The repository the route addresses, if one.
    pub fn repository(&self) -> Option<&RepoName> {
        match self {
            Route::TagsList { name }
            | Route::ManifestGet { name, .. }
            | Route::ManifestPut { name, .. }
            | Route::ManifestDelete { name, .. }
            | Route::BlobGet { name, .. }
            | Route::BlobDelete { name, .. }
            | Route::UploadStart { name }
            | Route::UploadPatch { name, .. }
            | Route::UploadPut { name, .. }
            | Route::UploadStatus { name, .. }
            | Route::UploadCancel { name, .. }
            | Route::Referrers { name, .. }
            | Route::ApiImage { name }
            | Route::ApiArtifacts { name }
            | Route::ApiArtifact { name, .. }
            | Route::ApiArtifactScan { name, .. }
            | Route::ApiTags { name }
            | Route::ApiTag { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The registry the route addresses: named in the path, or the first component of its
    /// repository.
    pub fn registry(&self) -> Option<&str> {
        match self {
            Route::ApiRegistry { registry }
            | Route::ApiImages { registry }
            | Route::ApiCleanupRules { registry }
            | Route::ApiCleanupRule { registry, .. }
            | Route::ApiCleanupSchedule { registry }
            | Route::ApiCleanupRuns { registry }
            | Route::ApiCleanupRun { registry, .. }
            | Route::ApiProtectionRules { registry }
            | Route::ApiProtectionRule { registry, .. }
            | Route::ApiWebhooks { registry }
            | Route::ApiWebhook { registry, .. }
            | Route::ApiWebhookTest { registry, .. }
            | Route::ApiWebhookDeliveries { registry, .. }
            | Route::ApiWebhookRedeliver { registry, .. }
            | Route::ApiReplicationTargets { registry }
            | Route::ApiReplicationTarget { registry, .. }
            | Route::ApiReplications { registry }
            | Route::ApiReplication { registry, .. }
            | Route::ApiReplicationRun { registry, .. }
            | Route::ApiReplicationExecutions { registry, .. }
            | Route::ApiReplicationExecution { registry, .. }
            | Route::ApiReplicationTasks { registry, .. }
            | Route::ApiScanSettings { registry }
            | Route::ApiTrust { registry }
            | Route::ApiTrustKeys { registry }
            | Route::ApiTrustKey { registry, .. } => Some(registry),
            other => other.repository().map(|name| crate::identity::registry::of_repository(name.as_str())),
        }
    }

    /// The user the route addresses, if one.
    pub fn user(&self) -> Option<&str> {
        match self {
            Route::ApiUser { user }
            | Route::ApiKeys { user }
            | Route::ApiKey { user, .. }
            | Route::ApiKeyRotate { user, .. } => Some(user),
            _ => None,
        }
    }

    /// Parses a request line. `host` (the `Host` header) counts toward the name length limit.
    pub fn parse(method: &Method, path: &str, host: Option<&str>) -> Result<Route, OciError> {
        let not_found = || OciError::new(ErrorCode::NameUnknown, format!("no registry route for {path}"));
        if path == "/auth/token" {
            return only(method, Route::Token);
        }
        if let Some(rest) = path.strip_prefix("/api/v1/") {
            return Route::parse_management(method, rest, host);
        }
        if let Some(rest) = path.strip_prefix("/console") {
            let asset = match rest.strip_prefix('/') {
                None if rest.is_empty() => "index.html",
                Some("") => "index.html",
                Some(asset) => asset,
                None => return Err(not_found()),
            };
            return only(method, Route::Console { asset: asset.to_string() });
        }
        let rest = path.strip_prefix("/v2").ok_or_else(not_found)?;
        let rest = match rest {
            "" | "/" => return only(method, Route::Base),
            r => r.strip_prefix('/').ok_or_else(not_found)?,
        };
        if rest == "_catalog" {
            return only(method, Route::Catalog);
        }
        let segs: Vec<&str> = rest.split('/').collect();
        let n = segs.len();
        let name = |k: usize| -> Result<RepoName, OciError> {
            if k == 0 {
                return Err(not_found());
            }
            Ok(RepoName::parse(&segs[..k].join("/"), host)?)
        };
        let seg = |i: usize| decode(segs[i]);
        if n >= 4 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
            let name = name(n - 3)?;
            if segs[n - 1].is_empty() {
                return only(method, Route::UploadStart { name });
            }
            let id = UploadId::parse(&seg(n - 1))?;
            return match *method {
                Method::PATCH => Ok(Route::UploadPatch { name, id }),
                Method::PUT => Ok(Route::UploadPut { name, id }),
                Method::GET => Ok(Route::UploadStatus { name, id }),
                Method::DELETE => Ok(Route::UploadCancel { name, id }),
                _ => Err(not_allowed(method)),
            };
        }
        if n < 3 {
            return Err(not_found());
        }
        match (segs[n - 2], segs[n - 1]) {
            ("blobs", "uploads") => only(method, Route::UploadStart { name: name(n - 2)? }),
            ("blobs", d) => {
                let name = name(n - 2)?;
                let digest: Digest = decode(d).parse()?;
                match *method {
                    Method::GET | Method::HEAD => Ok(Route::BlobGet { name, digest }),
                    Method::DELETE => Ok(Route::BlobDelete { name, digest }),
                    _ => Err(not_allowed(method)),
                }
            }
            ("manifests", r) => {
                let name = name(n - 2)?;
                let reference = Reference::parse(&decode(r))?;
                match *method {
                    Method::GET | Method::HEAD => Ok(Route::ManifestGet { name, reference }),
                    Method::PUT => Ok(Route::ManifestPut { name, reference }),
                    Method::DELETE => Ok(Route::ManifestDelete { name, reference }),
                    _ => Err(not_allowed(method)),
                }
            }
            ("tags", "list") => only(method, Route::TagsList { name: name(n - 2)? }),
            ("referrers", d) => {
                let name = name(n - 2)?;
                let digest: Digest = decode(d).parse()?;
                only(method, Route::Referrers { name, digest })
            }
            _ => Err(not_found()),
        }
    }
}

impl Route {
    /// Parses a management API path (after `/api/v1/`).
    fn parse_management(method: &Method, rest: &str, host: Option<&str>) -> Result<Route, OciError> {
        use Method as M;
        let not_found = || OciError::new(ErrorCode::NotFound, format!("no management route for /api/v1/{rest}"));
        let segs: Vec<std::borrow::Cow<'_, str>> = rest.trim_end_matches('/').split('/').map(decode).collect();
        let s: Vec<&str> = segs.iter().map(|c| c.as_ref()).collect();
        // an empty name names nothing; an overlong one is no name any record can have
        if s.iter().any(|seg| seg.is_empty()) {
            return Err(not_found());
        }
        if let Some(long) = s.iter().find(|seg| seg.len() > MAX_MANAGEMENT_SEGMENT) {
            return Err(OciError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "a path segment of {} bytes is longer than any name ({MAX_MANAGEMENT_SEGMENT} bytes at most)",
                    long.len()
                ),
            ));
        }
        let text = |i: usize| s[i].to_string();
        match s.as_slice() {
            ["registries"] => only(method, Route::ApiRegistries),
            ["registries", _] => only(method, Route::ApiRegistry { registry: text(1) }),
            ["registries", _, "images"] => only(method, Route::ApiImages { registry: text(1) }),
            ["registries", _, "cleanup", "rules"] => only(method, Route::ApiCleanupRules { registry: text(1) }),
            ["registries", _, "cleanup", "rules", _] => {
                only(method, Route::ApiCleanupRule { registry: text(1), rule: text(4) })
            }
            ["registries", _, "cleanup", "schedule"] => only(method, Route::ApiCleanupSchedule { registry: text(1) }),
            ["registries", _, "cleanup", "runs"] => only(method, Route::ApiCleanupRuns { registry: text(1) }),
            ["registries", _, "cleanup", "runs", _] => {
                only(method, Route::ApiCleanupRun { registry: text(1), run: text(4) })
            }
            ["registries", _, "protection", "rules"] => only(method, Route::ApiProtectionRules { registry: text(1) }),
            ["registries", _, "protection", "rules", _] => {
                only(method, Route::ApiProtectionRule { registry: text(1), rule: text(4) })
            }
            ["registries", _, "webhooks"] => only(method, Route::ApiWebhooks { registry: text(1) }),
            ["registries", _, "webhooks", _] => only(method, Route::ApiWebhook { registry: text(1), webhook: text(3) }),
            ["registries", _, "webhooks", _, "test"] => {
                only(method, Route::ApiWebhookTest { registry: text(1), webhook: text(3) })
            }
            ["registries", _, "webhooks", _, "deliveries"] => {
                only(method, Route::ApiWebhookDeliveries { registry: text(1), webhook: text(3) })
            }
            ["registries", _, "webhooks", _, "deliveries", _, "redeliver"] => {
                only(method, Route::ApiWebhookRedeliver { registry: text(1), webhook: text(3), delivery: text(5) })
            }
            ["registries", _, "replication-targets"] => {
                only(method, Route::ApiReplicationTargets { registry: text(1) })
            }
            ["registries", _, "replication-targets", _] => {
                only(method, Route::ApiReplicationTarget { registry: text(1), target: text(3) })
            }
            ["registries", _, "replications"] => only(method, Route::ApiReplications { registry: text(1) }),
            ["registries", _, "replications", _] => {
                only(method, Route::ApiReplication { registry: text(1), replication: text(3) })
            }
            ["registries", _, "replications", _, "run"] => {
                only(method, Route::ApiReplicationRun { registry: text(1), replication: text(3) })
            }
            ["registries", _, "replications", _, "executions"] => {
                only(method, Route::ApiReplicationExecutions { registry: text(1), replication: text(3) })
            }
            ["registries", _, "replications", _, "executions", _] => only(
                method,
                Route::ApiReplicationExecution { registry: text(1), replication: text(3), execution: text(5) },
            ),
            ["registries", _, "replications", _, "executions", _, "tasks"] => {
                only(method, Route::ApiReplicationTasks { registry: text(1), replication: text(3), execution: text(5) })
            }
            ["registries", _, "scan-settings"] => only(method, Route::ApiScanSettings { registry: text(1) }),
            ["registries", _, "trust"] => only(method, Route::ApiTrust { registry: text(1) }),
            ["registries", _, "trust", "keys"] => only(method, Route::ApiTrustKeys { registry: text(1) }),
            ["registries", _, "trust", "keys", _] => {
                only(method, Route::ApiTrustKey { registry: text(1), key: text(4) })
            }
            ["caches"] => only(method, Route::ApiCaches),
            ["caches", _] => only(method, Route::ApiCache { cache: text(1) }),
            ["gc", "runs"] => only(method, Route::ApiGcRuns),
            ["gc", "runs", _] => only(method, Route::ApiGcRun { run: text(2) }),
            ["users"] => only(method, Route::ApiUsers),
            ["users", _] => only(method, Route::ApiUser { user: text(1) }),
            ["users", _, "keys"] => only(method, Route::ApiKeys { user: text(1) }),
            ["users", _, "keys", _] => only(method, Route::ApiKey { user: text(1), key: text(3) }),
            ["users", _, "keys", _, "rotate"] => only(method, Route::ApiKeyRotate { user: text(1), key: text(3) }),
            ["audit"] => only(method, Route::ApiAudit),
            ["openapi.json"] => only(method, Route::ApiOpenApi),
            ["images", name @ .., "artifacts"] if !name.is_empty() && *method == M::GET => {
                Ok(Route::ApiArtifacts { name: RepoName::parse(&name.join("/"), host)? })
            }
            ["images", name @ .., "artifacts", d] if !name.is_empty() && d.contains(':') => {
                let name = RepoName::parse(&name.join("/"), host)?;
                let digest: Digest = d.parse()?;
                only(method, Route::ApiArtifact { name, digest })
            }
            ["images", name @ .., "artifacts", d, "scan"] if !name.is_empty() && d.contains(':') => {
                let name = RepoName::parse(&name.join("/"), host)?;
                let digest: Digest = d.parse()?;
                only(method, Route::ApiArtifactScan { name, digest })
            }
            ["images", name @ .., "tags"] if !name.is_empty() && *method == M::GET => {
                Ok(Route::ApiTags { name: RepoName::parse(&name.join("/"), host)? })
            }
            ["images", name @ .., "tags", t] if !name.is_empty() && (*method == M::PUT || *method == M::DELETE) => {
                Ok(Route::ApiTag { name: RepoName::parse(&name.join("/"), host)?, tag: Tag::parse(t)? })
            }
            ["images", name @ ..] if !name.is_empty() => {
                only(method, Route::ApiImage { name: RepoName::parse(&name.join("/"), host)? })
            }
            _ => Err(not_found()),
        }
    }
}

/// The longest segment of a management path: longer than every name the API accepts (registry,
/// user, access key, rule, run, tag and repository-component names), and within what every
/// metadata adapter can key on.
const MAX_MANAGEMENT_SEGMENT: usize = 256;

/// `route` if its endpoint serves `method`.
fn only(method: &Method, route: Route) -> Result<Route, OciError> {
    if route.declaration().operation(method).is_some() {
        Ok(route)
    } else {
        Err(not_allowed(method))
    }
}

fn not_allowed(method: &Method) -> OciError {
    OciError::new(ErrorCode::Unsupported, format!("method {method} is not allowed on this route"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(m: Method, p: &str) -> Result<Route, OciError> {
        Route::parse(&m, p, Some("127.0.0.1:5000"))
    }

    const D: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    #[test]
    fn parses_every_route() {
        let id = UploadId::generate();
        let cases = [
            (Method::GET, "/auth/token".to_string(), "token"),
            (Method::POST, "/auth/token".to_string(), "token"),
            (Method::GET, "/v2/".to_string(), "base"),
            (Method::HEAD, "/v2".to_string(), "base"),
            (Method::GET, "/v2/_catalog".to_string(), "catalog"),
            (Method::GET, "/v2/a/b/tags/list".to_string(), "tags-list"),
            (Method::GET, "/v2/a/b/c/manifests/latest".to_string(), "manifest-get"),
            (Method::HEAD, format!("/v2/a/manifests/{D}"), "manifest-get"),
            (Method::PUT, "/v2/a/manifests/v1".to_string(), "manifest-put"),
            (Method::DELETE, "/v2/a/manifests/v1".to_string(), "manifest-delete"),
            (Method::GET, format!("/v2/a/blobs/{D}"), "blob-get"),
            (Method::GET, format!("/v2/a/blobs/{}", D.replace(':', "%3A")), "blob-get"),
            (Method::DELETE, format!("/v2/a/blobs/{D}"), "blob-delete"),
            (Method::POST, "/v2/a/b/blobs/uploads/".to_string(), "upload-start"),
            (Method::POST, "/v2/a/b/blobs/uploads".to_string(), "upload-start"),
            (Method::PATCH, format!("/v2/a/blobs/uploads/{id}"), "upload-patch"),
            (Method::PUT, format!("/v2/a/blobs/uploads/{id}"), "upload-put"),
            (Method::GET, format!("/v2/a/blobs/uploads/{id}"), "upload-status"),
            (Method::DELETE, format!("/v2/a/blobs/uploads/{id}"), "upload-cancel"),
            (Method::GET, format!("/v2/a/referrers/{D}"), "referrers"),
            (Method::GET, "/console".to_string(), "console"),
            (Method::GET, "/console/".to_string(), "console"),
            (Method::HEAD, "/console/console.js".to_string(), "console"),
            // a deeper path is an asset name the console route refuses (it serves three files)
            (Method::GET, "/console/a/b".to_string(), "console"),
        ];
        for (m, p, name) in cases {
            assert_eq!(parse(m.clone(), &p).unwrap().name(), name, "{m} {p}");
        }
        assert_eq!(ROUTE_NAMES.len(), ROUTE_COUNT);
        // a longer word is no console path
        assert_eq!(parse(Method::GET, "/consolex").unwrap_err().code, ErrorCode::NameUnknown);
        assert_eq!(parse(Method::GET, "/console").unwrap(), Route::Console { asset: "index.html".into() });
    }

    #[test]
    fn declarations_carry_every_field_but_the_handler() {
        // what parsing and the access check read must be the endpoint's own data (only the
        // handler is left out, by `Endpoint::declaration`)
        for (endpoint, declared) in ENDPOINTS.iter().zip(DECLARATIONS.iter()) {
            assert_eq!(declared.name, endpoint.name);
            assert_eq!(declared.path_template(), endpoint.path_template());
            assert_eq!(declared.ports, endpoint.ports, "{}", endpoint.name);
            assert_eq!(
                serde_json::to_value(declared.operations).unwrap(),
                serde_json::to_value(endpoint.operations).unwrap(),
                "{}",
                endpoint.name
            );
        }
        let route = parse(Method::GET, "/v2/").unwrap();
        assert_eq!(route.endpoint().name, "base");
        assert_eq!(route.declaration().name, "base");
    }

    #[test]
    fn the_spec_table_matches_the_parser() {
        let id = UploadId::generate().to_string();
        for spec in ENDPOINTS {
            let suffix = spec
                .suffix
                .replace("{reference}", "v1")
                .replace("{digest}", D)
                .replace("{id}", &id)
                .replace("{registry}", "team")
                .replace("{user}", "alice")
                .replace("{key}", "BKEXAMPLE")
                .replace("{tag}", "v1")
                .replace("{rule}", "c1")
                .replace("{run}", "8199999999-abcdef12")
                .replace("{webhook}", "wh-0123456789ab")
                .replace("{delivery}", "8199999999-0190");
            let prefix = spec.prefix;
            let path =
                if spec.has_repository { format!("{prefix}/team/app{suffix}") } else { format!("{prefix}{suffix}") };
            for m in spec.methods() {
                let method = Method::from_bytes(m.as_bytes()).unwrap();
                assert_eq!(parse(method, &path).unwrap().name(), spec.name, "{m} {path}");
            }
        }
    }

    #[test]
    fn policy_and_gc_routes_carry_their_ids() {
        assert_eq!(
            parse(Method::PATCH, "/api/v1/registries/team/cleanup/rules/c3/").unwrap(),
            Route::ApiCleanupRule { registry: "team".into(), rule: "c3".into() }
        );
        assert_eq!(
            parse(Method::GET, "/api/v1/registries/team/cleanup/runs/8199999999-abcdef12").unwrap(),
            Route::ApiCleanupRun { registry: "team".into(), run: "8199999999-abcdef12".into() }
        );
        assert_eq!(
            parse(Method::DELETE, "/api/v1/registries/t/protection/rules/p1").unwrap(),
            Route::ApiProtectionRule { registry: "t".into(), rule: "p1".into() }
        );
        assert_eq!(parse(Method::GET, "/api/v1/gc/runs/x1").unwrap(), Route::ApiGcRun { run: "x1".into() });
        for (m, p) in [
            (Method::PUT, "/api/v1/registries/team/cleanup/rules"),
            (Method::GET, "/api/v1/registries/team/cleanup/rules/c1"),
            (Method::POST, "/api/v1/registries/team/cleanup/schedule"),
            (Method::DELETE, "/api/v1/registries/team/cleanup/runs/r1"),
            (Method::DELETE, "/api/v1/gc/runs"),
        ] {
            assert_eq!(parse(m.clone(), p).unwrap_err().code, ErrorCode::Unsupported, "{m} {p}");
        }
        assert_eq!(parse(Method::GET, "/api/v1/registries/team/cleanup").unwrap_err().code, ErrorCode::NotFound);
        for p in ["/api/v1/registries//images", "/api/v1/users//keys", "/api/v1//registries", "/api/v1/gc//runs"] {
            assert_eq!(parse(Method::GET, p).unwrap_err().code, ErrorCode::NotFound, "{p}");
        }
        let long = "a".repeat(600);
        for p in [format!("/api/v1/registries/{long}"), format!("/api/v1/users/{long}/keys/x")] {
            assert_eq!(parse(Method::GET, &p).unwrap_err().code, ErrorCode::InvalidRequest, "{p}");
        }
    }

    #[test]
    fn names_may_contain_route_keywords() {
        let r = parse(Method::GET, "/v2/blobs/manifests/manifests/v1").unwrap();
        assert_eq!(
            r,
            Route::ManifestGet {
                name: RepoName::parse("blobs/manifests", None).unwrap(),
                reference: Reference::parse("v1").unwrap()
            }
        );
    }

    #[test]
    fn refuses_bad_paths_with_spec_codes() {
        assert_eq!(parse(Method::GET, "/v2/UPPER/tags/list").unwrap_err().code, ErrorCode::NameInvalid);
        assert_eq!(parse(Method::GET, "/v2/a/manifests/bad:tag").unwrap_err().code, ErrorCode::DigestInvalid);
        assert_eq!(parse(Method::GET, "/v2/a/blobs/md5:abc").unwrap_err().code, ErrorCode::DigestInvalid);
        assert_eq!(parse(Method::POST, "/v2/a/tags/list").unwrap_err().code, ErrorCode::Unsupported);
        assert_eq!(parse(Method::GET, "/v2/a/blobs/uploads/nope").unwrap_err().code, ErrorCode::BlobUploadUnknown);
        assert_eq!(parse(Method::GET, "/v3/").unwrap_err().code, ErrorCode::NameUnknown);
        assert_eq!(parse(Method::GET, "/v2/a/unknown/x").unwrap_err().code, ErrorCode::NameUnknown);
        let long = format!("/v2/{}/tags/list", "a".repeat(250));
        assert_eq!(parse(Method::GET, &long).unwrap_err().code, ErrorCode::NameInvalid);
        let tag129 = format!("/v2/a/manifests/{}", "t".repeat(129));
        assert_eq!(parse(Method::PUT, &tag129).unwrap_err().code, ErrorCode::TagInvalid);
    }
}
