//! Image caches: a source registry (NCR, ECR, ACR, GCR, Docker Hub, any Docker registry, Harbor,
//! Quay) with its URL and credentials in that type's form. The secret is sealed with the secrets
//! key and never returned; the URL's port must be one the operator allows (80 and 443 by
//! default, as NCR) when saved, and its host must pass the outbound guard then and before every request.
//! A cache in use by a cache-type registry cannot be deleted: each such registry holds a claim
//! document (`<cache>/<registry>`), written before the registry, and a delete first marks the
//! cache as going so no claim is written after it looked.

use serde::{Deserialize, Serialize};

use super::CacheError;
use crate::app::App;
use crate::metadata::{Collection, Expect, MetadataError, UnixTime};
use crate::outbound::OutboundError;
use crate::sealed::Sealed;

/// Caches by name.
const CACHES: Collection<StoredCache> = Collection::new("image-cache");

/// Which cache-type registries use a cache: id `<cache>/<registry>`.
const USES: Collection<CacheUse> = Collection::new("image-cache-use");

/// The most caches one deployment may define.
pub const MAX_CACHES: usize = 100;

/// The Docker Hub registry API every `docker-hub` cache talks to (hub.docker.com is its website).
pub const DOCKER_HUB_REGISTRY: &str = "https://registry-1.docker.io";

/// The host names a `docker-hub` cache's URL may name.
const DOCKER_HUB_HOSTS: [&str; 5] =
    ["hub.docker.com", "docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"];

/// What kind of registry the source is: it decides the URL and credential forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// NHN Container Registry: user access key id and secret
    Ncr,
    /// Amazon ECR: IAM access key id and secret, exchanged for a registry token
    Ecr,
    /// Azure Container Registry: access key user name and password
    Acr,
    /// Google Container/Artifact Registry: `_json_key` and the service account's JSON key
    Gcr,
    /// Docker Hub: user name and password or personal access token
    DockerHub,
    /// any registry speaking the distribution API
    DockerRegistry,
    /// Harbor: user name and password
    Harbor,
    /// Quay: `json_file` and `{"account_name", "docker_cli_password"}`
    Quay,
}

impl SourceKind {
    /// Its name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Ncr => "ncr",
            SourceKind::Ecr => "ecr",
            SourceKind::Acr => "acr",
            SourceKind::Gcr => "gcr",
            SourceKind::DockerHub => "docker-hub",
            SourceKind::DockerRegistry => "docker-registry",
            SourceKind::Harbor => "harbor",
            SourceKind::Quay => "quay",
        }
    }
}

/// A cache as stored (secret sealed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredCache {
    /// unique, registry-name rules
    pub name: String,
    /// the source's kind
    pub kind: SourceKind,
    /// the URL as given (normalised)
    pub url: String,
    /// the base URL requests go to (Docker Hub's registry API for `docker-hub`)
    pub endpoint: String,
    /// the access id (user name, key id, `_json_key`, `json_file`)
    #[serde(default)]
    pub access_id: Option<String>,
    /// the access secret, sealed
    #[serde(default)]
    pub secret: Option<Sealed>,
    /// accept any TLS certificate
    #[serde(default)]
    pub skip_tls_verify: bool,
    /// free text
    #[serde(default)]
    pub description: String,
    /// when created
    pub created_at: UnixTime,
    /// when last changed
    pub updated_at: UnixTime,
    /// who created it
    pub created_by: String,
    /// a delete is under way: no registry may start using it
    #[serde(default)]
    pub deleting: bool,
}

/// A registry's claim on a cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheUse {
    registry: String,
}

/// A cache as the API shows it: no secret, only whether one is set, and who uses it.
#[derive(Debug, Clone, Serialize)]
pub struct CacheView {
    /// its name
    pub name: String,
    /// the source's kind
    #[serde(rename = "type")]
    pub kind: SourceKind,
    /// the URL as given
    pub url: String,
    /// the base URL requests go to
    pub endpoint: String,
    /// the access id
    pub access_id: Option<String>,
    /// whether a secret is set
    pub secret_set: bool,
    /// TLS verification skipped
    pub skip_tls_verify: bool,
    /// free text
    pub description: String,
    /// when created
    pub created_at: UnixTime,
    /// when last changed
    pub updated_at: UnixTime,
    /// who created it
    pub created_by: String,
    /// the cache-type registries using it
    pub registries: Vec<String>,
}

/// A new cache, as `POST` takes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCache {
    /// unique name
    pub name: String,
    /// the source's kind
    #[serde(rename = "type")]
    pub kind: SourceKind,
    /// the source's URL
    pub url: String,
    /// access id
    #[serde(default)]
    pub access_id: Option<String>,
    /// access secret
    #[serde(default)]
    pub access_secret: Option<String>,
    /// default false
    #[serde(default)]
    pub skip_tls_verify: bool,
    /// free text
    #[serde(default)]
    pub description: String,
}

/// A change, as `PATCH` takes it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CachePatch {
    /// new kind
    #[serde(rename = "type", default)]
    pub kind: Option<SourceKind>,
    /// new URL
    #[serde(default)]
    pub url: Option<String>,
    /// new access id (`""` removes it and the secret)
    #[serde(default)]
    pub access_id: Option<String>,
    /// new access secret
    #[serde(default)]
    pub access_secret: Option<String>,
    /// TLS verification
    #[serde(default)]
    pub skip_tls_verify: Option<bool>,
    /// free text
    #[serde(default)]
    pub description: Option<String>,
}

impl StoredCache {
    /// What the API shows, with the registries using it.
    pub fn view(&self, registries: Vec<String>) -> CacheView {
        CacheView {
            name: self.name.clone(),
            kind: self.kind,
            url: self.url.clone(),
            endpoint: self.endpoint.clone(),
            access_id: self.access_id.clone(),
            secret_set: self.secret.is_some(),
            skip_tls_verify: self.skip_tls_verify,
            description: self.description.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            created_by: self.created_by.clone(),
            registries,
        }
    }

    /// The secret in the clear, for a request to the source.
    pub async fn secret(&self, app: &App) -> Result<Option<String>, CacheError> {
        match &self.secret {
            None => Ok(None),
            Some(sealed) => {
                let key = crate::secrets::key(app).await?;
                Ok(Some(key.open(sealed, &seal_context(&self.name))?))
            }
        }
    }
}

/// The sealing context of a cache's secret (a sealed value copied to another cache does not open).
fn seal_context(name: &str) -> String {
    format!("image-cache:{name}:secret")
}

/// Checks a cache name: the registry-name rules.
pub fn validate_name(name: &str) -> Result<(), CacheError> {
    crate::identity::registry::validate_name(name).map_err(|_| {
        CacheError::Invalid(format!(
            "name {name:?}: use 1-63 lowercase letters, digits and single '.', '_' or '-' separators"
        ))
    })
}

/// Checks the URL for `kind` and the operator's ports and outbound guard; returns the normalised
/// URL and the base URL requests go to.
pub async fn validate_url(app: &App, kind: SourceKind, url: &str) -> Result<(String, String), CacheError> {
    if url.len() > 2048 || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(CacheError::Invalid("url: at most 2048 bytes, without spaces or control characters".into()));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| CacheError::Invalid(format!("url {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(CacheError::Invalid(format!("url: scheme {:?} is not http or https", parsed.scheme())));
    }
    let Some(host) = parsed.host_str().filter(|h| !h.is_empty()).map(str::to_ascii_lowercase) else {
        return Err(CacheError::Invalid("url: it has no host".into()));
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(CacheError::Invalid("url: credentials go in access_id and access_secret, not the URL".into()));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() || !matches!(parsed.path(), "" | "/") {
        return Err(CacheError::Invalid(
            "url: give the registry's base URL only, without a path, query or fragment".into(),
        ));
    }
    let port = parsed.port_or_known_default().unwrap_or(0);
    if let Some(allowed) = &app.settings.cache.source_ports {
        if !allowed.contains(&port) {
            return Err(CacheError::Invalid(format!(
                "url: port {port} is not allowed for a cache source (allowed: {}; an operator may allow more with BERTH_CACHE_SOURCE_PORTS)",
                allowed.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let normalised = parsed.to_string().trim_end_matches('/').to_string();
    let endpoint = match kind {
        SourceKind::DockerHub => {
            if !DOCKER_HUB_HOSTS.contains(&host.as_str()) {
                return Err(CacheError::Invalid(format!(
                    "url: a docker-hub cache names https://hub.docker.com (or {}), not {host}",
                    DOCKER_HUB_HOSTS[1..].join(", ")
                )));
            }
            DOCKER_HUB_REGISTRY.to_string()
        }
        SourceKind::Ecr => {
            super::upstream::ecr_region(&host).ok_or_else(|| {
                CacheError::Invalid(format!(
                    "url: an ecr cache names https://<account id>.dkr.ecr.<region>.amazonaws.com, not {host}"
                ))
            })?;
            normalised.clone()
        }
        _ => normalised.clone(),
    };
    match app.settings.webhooks.outbound.check_url(&endpoint).await {
        Ok(_) => {}
        // an address that does not resolve now may later; a private one never may
        Err(OutboundError::Resolve { host, reason }) => {
            tracing::warn!(%host, %reason, "a cache source's host does not resolve now");
        }
        Err(e) => return Err(CacheError::Invalid(format!("url: {e}"))),
    }
    Ok((normalised, endpoint))
}

/// Checks the access id and secret in `kind`'s form.
pub fn validate_credentials(kind: SourceKind, id: Option<&str>, secret: Option<&str>) -> Result<(), CacheError> {
    for (what, value) in [("access_id", id), ("access_secret", secret)] {
        if value.is_some_and(|v| v.len() > 16 * 1024) {
            return Err(CacheError::Invalid(format!("{what}: at most 16 KiB")));
        }
    }
    if id.is_some_and(|i| i.is_empty() || i.chars().any(|c| c.is_control() || c == ':')) {
        return Err(CacheError::Invalid("access_id: must not be empty or hold ':' or control characters".into()));
    }
    match (id, secret) {
        (None, Some(_)) => return Err(CacheError::Invalid("access_secret without access_id".into())),
        (Some(_), None) => return Err(CacheError::Invalid("access_id without access_secret".into())),
        _ => {}
    }
    match kind {
        SourceKind::Ecr if id.is_none() => {
            Err(CacheError::Invalid("an ecr cache needs an IAM access key id and secret access key".into()))
        }
        SourceKind::Gcr => {
            if id != Some("_json_key") {
                return Err(CacheError::Invalid("a gcr cache's access_id is _json_key".into()));
            }
            let json: serde_json::Value = serde_json::from_str(secret.unwrap_or_default()).map_err(|e| {
                CacheError::Invalid(format!("access_secret: the service account's JSON key does not parse: {e}"))
            })?;
            for field in ["type", "client_email", "private_key"] {
                if !json.get(field).is_some_and(serde_json::Value::is_string) {
                    return Err(CacheError::Invalid(format!(
                        "access_secret: the service account's JSON key has no {field:?}"
                    )));
                }
            }
            Ok(())
        }
        SourceKind::Quay if id.is_some() => {
            if id != Some("json_file") {
                return Err(CacheError::Invalid("a quay cache's access_id is json_file".into()));
            }
            quay_login(secret.unwrap_or_default()).map(|_| ())
        }
        _ => Ok(()),
    }
}

/// The account and password of Quay's JSON form.
pub fn quay_login(secret: &str) -> Result<(String, String), CacheError> {
    #[derive(Deserialize)]
    struct Quay {
        account_name: String,
        docker_cli_password: String,
    }
    let q: Quay = serde_json::from_str(secret).map_err(|e| {
        CacheError::Invalid(format!(
            "access_secret: a quay cache takes {{\"account_name\": \"...\", \"docker_cli_password\": \"...\"}}: {e}"
        ))
    })?;
    if q.account_name.is_empty() || q.account_name.contains(':') {
        return Err(CacheError::Invalid("access_secret: account_name must be a non-empty name without ':'".into()));
    }
    Ok((q.account_name, q.docker_cli_password))
}

fn validate_description(text: &str) -> Result<(), CacheError> {
    if text.len() > 1000 || text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(CacheError::Invalid("description: at most 1000 bytes without control characters".into()));
    }
    Ok(())
}

async fn seal(app: &App, name: &str, secret: Option<&str>) -> Result<Option<Sealed>, CacheError> {
    match secret {
        None => Ok(None),
        Some(s) => Ok(Some(crate::secrets::key(app).await?.seal(s, &seal_context(name))?)),
    }
}

/// A cache by name.
pub async fn get(app: &App, name: &str) -> Result<Option<(StoredCache, u64)>, CacheError> {
    if name.len() > 63 {
        return Ok(None);
    }
    Ok(CACHES.get(app.meta.as_ref(), name).await?.map(|v| (v.record, v.version)))
}

/// A cache by name, or `NotFound`.
pub async fn must_get(app: &App, name: &str) -> Result<(StoredCache, u64), CacheError> {
    get(app, name).await?.ok_or_else(|| CacheError::NotFound(format!("image cache {name:?}")))
}

/// The registries using cache `name`.
pub async fn users(app: &App, name: &str) -> Result<Vec<String>, CacheError> {
    let (items, _) = USES.list(app.meta.as_ref(), &format!("{name}/"), None, 1000).await?;
    Ok(items.into_iter().map(|v| v.record.registry).collect())
}

/// A cache as shown.
pub async fn view(app: &App, cache: &StoredCache) -> Result<CacheView, CacheError> {
    Ok(cache.view(users(app, &cache.name).await?))
}

/// Caches after `after`, at most `limit`, and whether more exist.
pub async fn list(app: &App, after: Option<&str>, limit: usize) -> Result<(Vec<StoredCache>, bool), CacheError> {
    let (items, more) = CACHES.list(app.meta.as_ref(), "", after, limit).await?;
    Ok((items.into_iter().map(|v| v.record).collect(), more))
}

/// Creates a cache.
pub async fn create(app: &App, new: NewCache, by: &str) -> Result<StoredCache, CacheError> {
    validate_name(&new.name)?;
    validate_description(&new.description)?;
    validate_credentials(new.kind, new.access_id.as_deref(), new.access_secret.as_deref())?;
    let (url, endpoint) = validate_url(app, new.kind, &new.url).await?;
    if CACHES.list(app.meta.as_ref(), "", None, MAX_CACHES).await?.0.len() >= MAX_CACHES {
        return Err(CacheError::Invalid(format!("at most {MAX_CACHES} image caches may be defined")));
    }
    let now = app.clock.now();
    let cache = StoredCache {
        secret: seal(app, &new.name, new.access_secret.as_deref()).await?,
        name: new.name,
        kind: new.kind,
        url,
        endpoint,
        access_id: new.access_id,
        skip_tls_verify: new.skip_tls_verify,
        description: new.description,
        created_at: now,
        updated_at: now,
        created_by: by.to_string(),
        deleting: false,
    };
    match CACHES.put(app.meta.as_ref(), &cache.name, &cache, Expect::Absent).await {
        Ok(_) => Ok(cache),
        Err(MetadataError::Conflict(_)) => {
            Err(CacheError::Exists(format!("image cache {:?} already exists", cache.name)))
        }
        Err(e) => Err(e.into()),
    }
}

/// Applies a change; the whole definition is checked again.
pub async fn update(app: &App, name: &str, patch: CachePatch) -> Result<StoredCache, CacheError> {
    let (mut cache, version) = must_get(app, name).await?;
    if cache.deleting {
        return Err(CacheError::NotFound(format!("image cache {name:?}")));
    }
    let kind = patch.kind.unwrap_or(cache.kind);
    // a new id without a new secret, or a new kind, needs the secret in the clear to check the pair
    let clearing = patch.access_id.as_deref() == Some("");
    let secret = match (&patch.access_secret, clearing) {
        (_, true) => None,
        (Some(s), false) => Some(s.clone()),
        (None, false) => cache.secret(app).await?,
    };
    let id = if clearing { None } else { patch.access_id.clone().or(cache.access_id.clone()) };
    validate_credentials(kind, id.as_deref(), secret.as_deref())?;
    if let Some(d) = &patch.description {
        validate_description(d)?;
        cache.description = d.clone();
    }
    let (url, endpoint) = validate_url(app, kind, patch.url.as_deref().unwrap_or(&cache.url)).await?;
    cache.kind = kind;
    cache.url = url;
    cache.endpoint = endpoint;
    if patch.access_secret.is_some() || clearing {
        cache.secret = seal(app, name, secret.as_deref()).await?;
    }
    cache.access_id = id;
    if let Some(skip) = patch.skip_tls_verify {
        cache.skip_tls_verify = skip;
    }
    cache.updated_at = app.clock.now();
    match CACHES.put(app.meta.as_ref(), name, &cache, Expect::Version(version)).await {
        Ok(_) => {
            app.upstream.forget(name);
            Ok(cache)
        }
        Err(MetadataError::Conflict(_)) => {
            Err(CacheError::Conflict(format!("image cache {name:?} changed meanwhile; read it and try again")))
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes a cache no registry uses: marks it going (so no registry starts using it), looks for
/// users, and either deletes it or takes the mark back and refuses.
pub async fn delete(app: &App, name: &str) -> Result<(), CacheError> {
    let (mut cache, version) = must_get(app, name).await?;
    cache.deleting = true;
    let version = match CACHES.put(app.meta.as_ref(), name, &cache, Expect::Version(version)).await {
        Ok(v) => v,
        Err(MetadataError::Conflict(_)) => {
            return Err(CacheError::Conflict(format!("image cache {name:?} changed meanwhile; try again")))
        }
        Err(e) => return Err(e.into()),
    };
    let using = users(app, name).await?;
    if !using.is_empty() {
        cache.deleting = false;
        CACHES.put(app.meta.as_ref(), name, &cache, Expect::Version(version)).await?;
        return Err(CacheError::Conflict(format!(
            "image cache {name:?} is used by registry {}; delete the registry first",
            using.join(", ")
        )));
    }
    CACHES.delete(app.meta.as_ref(), name, Expect::Any).await?;
    app.upstream.forget(name);
    Ok(())
}

/// Records that `registry` uses cache `name`, before the registry is created; refused when the
/// cache does not exist or is being deleted (the claim is taken back then). A claim already
/// there belongs to an existing registry of that name (never released by a create that fails
/// on the name), or to a creation that crashed before its registry was written (taken over).
pub async fn claim(app: &App, name: &str, registry: &str) -> Result<(), CacheError> {
    let key = format!("{name}/{registry}");
    let new = CacheUse { registry: registry.to_string() };
    match USES.put(app.meta.as_ref(), &key, &new, Expect::Absent).await {
        Ok(_) => {}
        Err(MetadataError::Conflict(_)) => {
            if crate::identity::registry::get(app.meta.as_ref(), registry).await?.is_some() {
                return Err(CacheError::Exists(format!("registry {registry:?} already exists")));
            }
        }
        Err(e) => return Err(e.into()),
    }
    match get(app, name).await? {
        Some((cache, _)) if !cache.deleting => Ok(()),
        _ => {
            USES.delete(app.meta.as_ref(), &key, Expect::Any).await?;
            Err(CacheError::Invalid(format!("cache: image cache {name:?} does not exist")))
        }
    }
}

/// Drops the claim of `registry` on cache `name` (the registry was deleted, or its creation failed).
pub async fn release(app: &App, name: &str, registry: &str) -> Result<(), CacheError> {
    USES.delete(app.meta.as_ref(), &format!("{name}/{registry}"), Expect::Any).await?;
    Ok(())
}

/// The cleanup rule a cache registry starts with, as the guide's: delete what was not pulled
/// within 7 days (never pulled counts from when it was cached), checked daily at 04:00 UTC.
/// Both stay editable like any registry's rules.
pub async fn add_default_cleanup(app: &App, registry: &str) -> Result<(), CacheError> {
    use crate::policy::cleanup;
    let rule = cleanup::NewRule {
        image: "**".to_string(),
        tag: "**".to_string(),
        tag_mode: cleanup::TagMode::Match,
        untagged: true,
        keep: cleanup::Keep::PulledWithin(7),
    };
    let now = app.clock.now();
    let done = async {
        cleanup::add_rule(app.meta.as_ref(), registry, &rule, now).await?;
        cleanup::set_cycle(app.meta.as_ref(), registry, Some(DEFAULT_CLEANUP_CYCLE), now).await?;
        Ok::<(), cleanup::CleanupError>(())
    };
    Ok(done.await?)
}

/// When a cache registry's default cleanup runs: daily, 04:00 UTC.
pub const DEFAULT_CLEANUP_CYCLE: &str = "0 4 * * *";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn credential_forms() {
        use SourceKind as K;
        assert!(validate_credentials(K::DockerRegistry, None, None).is_ok());
        assert!(validate_credentials(K::DockerRegistry, Some("u"), Some("p")).is_ok());
        assert!(validate_credentials(K::DockerRegistry, Some("u"), None).is_err());
        assert!(validate_credentials(K::DockerRegistry, None, Some("p")).is_err());
        assert!(validate_credentials(K::DockerRegistry, Some("a:b"), Some("p")).is_err());
        assert!(validate_credentials(K::Ecr, None, None).is_err());
        let key = r#"{"type":"service_account","client_email":"a@b","private_key":"-----BEGIN"}"#;
        assert!(validate_credentials(K::Gcr, Some("_json_key"), Some(key)).is_ok());
        assert!(validate_credentials(K::Gcr, Some("me"), Some(key)).is_err());
        assert!(validate_credentials(K::Gcr, Some("_json_key"), Some("{}")).is_err());
        assert!(validate_credentials(K::Gcr, Some("_json_key"), Some("not json")).is_err());
        let quay = r#"{"account_name":"bot","docker_cli_password":"pw"}"#;
        assert!(validate_credentials(K::Quay, Some("json_file"), Some(quay)).is_ok());
        assert!(validate_credentials(K::Quay, Some("json_file"), Some("pw")).is_err());
        assert!(validate_credentials(K::Quay, Some("bot"), Some(quay)).is_err());
        assert_eq!(quay_login(quay).unwrap(), ("bot".to_string(), "pw".to_string()));
    }
}
