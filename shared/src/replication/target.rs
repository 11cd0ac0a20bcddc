//! Replication targets: a remote registry (another Berth, or any OCI distribution registry) with
//! its URL and credentials, per registry or shared by all (`_all`). The password is sealed with
//! the secrets key and never returned; the URL passes the outbound guard when saved and before
//! every request.

use serde::{Deserialize, Serialize};

use super::{ReplicationError, ALL_REGISTRIES};
use crate::app::App;
use crate::metadata::{Collection, Expect, MetadataError, UnixTime};
use crate::sealed::Sealed;

/// Where targets are kept: id `<scope>/<target id>`.
const TARGETS: Collection<StoredTarget> = Collection::new("replication-target");

/// The most targets one scope may have.
pub const MAX_PER_SCOPE: usize = 20;
/// The default size of one upload chunk (a `PATCH`).
pub const DEFAULT_CHUNK_BYTES: u64 = 8 * 1024 * 1024;
/// The chunk sizes allowed: 1 MiB to 64 MiB (a Berth target on Lambda without an upload
/// gateway takes at most 4 MiB per request).
pub const CHUNK_BYTES: std::ops::RangeInclusive<u64> = 1024 * 1024..=64 * 1024 * 1024;

/// What kind of registry a target is (both speak the OCI distribution API; a Berth target's
/// destination is a Berth registry name, which must exist there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// another Berth (another region or deployment)
    Berth,
    /// any OCI distribution registry
    Registry,
}

/// A target as stored (password sealed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredTarget {
    /// `rt-<12 hex>`
    pub id: String,
    /// the registry, or `_all`
    pub registry: String,
    /// unique within its scope
    pub name: String,
    /// free text
    #[serde(default)]
    pub description: String,
    /// berth or registry
    pub kind: TargetKind,
    /// the remote's base URL (`https://registry.example.net`)
    pub url: String,
    /// the user name or access key id, if the remote needs credentials
    #[serde(default)]
    pub username: Option<String>,
    /// the password or secret key, sealed
    #[serde(default)]
    pub password: Option<Sealed>,
    /// accept any TLS certificate (only when asked)
    pub skip_tls_verify: bool,
    /// the size of one upload chunk
    pub chunk_bytes: u64,
    /// when created
    pub created_at: UnixTime,
    /// when last changed
    pub updated_at: UnixTime,
    /// who created it
    pub created_by: String,
}

/// A target as the API shows it: no password, only whether one is set.
#[derive(Debug, Clone, Serialize)]
pub struct TargetView {
    /// `rt-<12 hex>`
    pub id: String,
    /// the registry, or `_all`
    pub registry: String,
    /// its name
    pub name: String,
    /// free text
    pub description: String,
    /// berth or registry
    pub kind: TargetKind,
    /// base URL
    pub url: String,
    /// user name or access key id
    pub username: Option<String>,
    /// whether a password is set
    pub password_set: bool,
    /// TLS verification skipped
    pub skip_tls_verify: bool,
    /// upload chunk size
    pub chunk_bytes: u64,
    /// when created
    pub created_at: UnixTime,
    /// when last changed
    pub updated_at: UnixTime,
    /// who created it
    pub created_by: String,
}

impl StoredTarget {
    /// What the API shows.
    pub fn view(&self) -> TargetView {
        TargetView {
            id: self.id.clone(),
            registry: self.registry.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            kind: self.kind,
            url: self.url.clone(),
            username: self.username.clone(),
            password_set: self.password.is_some(),
            skip_tls_verify: self.skip_tls_verify,
            chunk_bytes: self.chunk_bytes,
            created_at: self.created_at,
            updated_at: self.updated_at,
            created_by: self.created_by.clone(),
        }
    }

    /// Where the target is and how to sign in, for a connection (pushing needs `pull,push`).
    pub async fn endpoint(&self, app: &App) -> Result<crate::remote::Endpoint, ReplicationError> {
        Ok(crate::remote::Endpoint {
            url: self.url.clone(),
            username: self.username.clone(),
            password: self.password(app).await?,
            skip_tls_verify: self.skip_tls_verify,
            actions: "pull,push",
            ports: None,
            transfer_timeout: None,
        })
    }

    /// The password in the clear, for a request to the remote.
    pub async fn password(&self, app: &App) -> Result<Option<String>, ReplicationError> {
        match &self.password {
            None => Ok(None),
            Some(sealed) => {
                let key = crate::secrets::key(app).await?;
                Ok(Some(key.open(sealed, &seal_context(&self.registry, &self.id))?))
            }
        }
    }
}

fn key_of(scope: &str, id: &str) -> String {
    format!("{scope}/{id}")
}

/// The sealing context of a target's password (a sealed value copied elsewhere does not open).
fn seal_context(scope: &str, id: &str) -> String {
    format!("replication-target:{scope}/{id}:password")
}

/// A new target, as `POST` takes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTarget {
    /// unique within the scope
    pub name: String,
    /// free text
    #[serde(default)]
    pub description: String,
    /// berth or registry (default)
    #[serde(default = "default_kind")]
    pub kind: TargetKind,
    /// base URL
    pub url: String,
    /// user name or access key id
    #[serde(default)]
    pub username: Option<String>,
    /// password or secret key
    #[serde(default)]
    pub password: Option<String>,
    /// default false
    #[serde(default)]
    pub skip_tls_verify: bool,
    /// default 8 MiB
    #[serde(default)]
    pub chunk_bytes: Option<u64>,
}

/// A change, as `PATCH` takes it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetPatch {
    /// new name
    pub name: Option<String>,
    /// new description
    pub description: Option<String>,
    /// new kind
    pub kind: Option<TargetKind>,
    /// new URL
    pub url: Option<String>,
    /// new user name; `""` removes it
    pub username: Option<String>,
    /// new password; `""` removes it
    pub password: Option<String>,
    /// TLS verification
    pub skip_tls_verify: Option<bool>,
    /// chunk size
    pub chunk_bytes: Option<u64>,
}

fn default_kind() -> TargetKind {
    TargetKind::Registry
}

/// Checks a name: 1 to 64 letters, digits, spaces, `.`, `_`, `-`.
pub fn validate_name(name: &str) -> Result<(), ReplicationError> {
    let ok = !name.trim().is_empty()
        && name.trim() == name
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ReplicationError::Invalid(format!(
            "name {name:?}: use 1 to 64 letters, digits, spaces, '.', '_' or '-', not starting or ending with a space"
        )))
    }
}

/// Checks free text: at most 1 KiB.
pub fn validate_description(text: &str) -> Result<(), ReplicationError> {
    if text.len() > 1024 {
        return Err(ReplicationError::Invalid("description: longer than 1024 bytes".into()));
    }
    Ok(())
}

fn validate_credential(field: &str, value: &str) -> Result<(), ReplicationError> {
    if value.len() > 4096 {
        return Err(ReplicationError::Invalid(format!("{field}: longer than 4096 bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(ReplicationError::Invalid(format!("{field}: control characters are not allowed")));
    }
    if field == "username" && value.contains(':') {
        return Err(ReplicationError::Invalid("username: ':' is not allowed (Basic credentials)".into()));
    }
    Ok(())
}

fn validate_chunk(bytes: u64) -> Result<u64, ReplicationError> {
    if CHUNK_BYTES.contains(&bytes) {
        Ok(bytes)
    } else {
        Err(ReplicationError::Invalid(format!(
            "chunk_bytes: use {} to {} bytes (1 MiB to 64 MiB)",
            CHUNK_BYTES.start(),
            CHUNK_BYTES.end()
        )))
    }
}

/// Checks a base URL's form and that it reaches a permitted address; returns it normalized
/// (no trailing `/`), as stored and shown.
pub async fn validate_url(app: &App, url: &str) -> Result<String, ReplicationError> {
    if url.len() > 2048 {
        return Err(ReplicationError::Invalid("url: longer than 2048 bytes".into()));
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ReplicationError::Invalid("url: spaces and control characters are not allowed".into()));
    }
    let parsed = app.settings.webhooks.outbound.check_url(url).await.map_err(ReplicationError::Outbound)?;
    if parsed.query().is_some() {
        return Err(ReplicationError::Invalid("url: a query (?...) is not allowed in a registry's base URL".into()));
    }
    let text = parsed.to_string();
    let text = text.trim_end_matches('/');
    if text.ends_with("/v2") {
        return Err(ReplicationError::Invalid("url: give the registry's base URL, without /v2".into()));
    }
    Ok(text.to_string())
}

/// Checks a scope: a registry that exists, or `_all`.
pub async fn check_scope(app: &App, scope: &str) -> Result<(), ReplicationError> {
    if scope == ALL_REGISTRIES {
        return Ok(());
    }
    match crate::identity::registry::get(app.meta.as_ref(), scope).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(ReplicationError::NoRegistry(scope.to_string())),
        Err(e) => Err(ReplicationError::Identity(e)),
    }
}

/// The targets of a scope, in id order.
pub async fn list(
    app: &App,
    scope: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<StoredTarget>, bool), ReplicationError> {
    let after = after.map(|a| key_of(scope, a));
    let (items, more) = TARGETS.list(app.meta.as_ref(), &format!("{scope}/"), after.as_deref(), limit).await?;
    Ok((items.into_iter().map(|v| v.record).collect(), more))
}

/// One target, with its version.
pub async fn get(app: &App, scope: &str, id: &str) -> Result<(StoredTarget, u64), ReplicationError> {
    if id.len() > super::MAX_ID_BYTES {
        return Err(ReplicationError::NotFound(format!("replication target {id:.64}… of {scope}")));
    }
    TARGETS
        .get(app.meta.as_ref(), &key_of(scope, id))
        .await?
        .map(|v| (v.record, v.version))
        .ok_or_else(|| ReplicationError::NotFound(format!("replication target {id} of {scope}")))
}

/// Whether target `id` is a shared one (`_all`): using it pushes with credentials an
/// administrator over every registry chose, so only such a principal may point a policy at it.
pub async fn is_shared(app: &App, id: &str) -> Result<bool, ReplicationError> {
    Ok(TARGETS.get(app.meta.as_ref(), &key_of(ALL_REGISTRIES, id)).await?.is_some())
}

/// The target a policy of `registry` names: its own, or a shared one.
pub async fn usable_by(app: &App, registry: &str, id: &str) -> Result<StoredTarget, ReplicationError> {
    for scope in [registry, ALL_REGISTRIES] {
        if let Some(found) = TARGETS.get(app.meta.as_ref(), &key_of(scope, id)).await? {
            return Ok(found.record);
        }
    }
    Err(ReplicationError::Invalid(format!("target: {id:?} is not a replication target of {registry} or of _all")))
}

/// Creates a target.
pub async fn create(app: &App, scope: &str, new: NewTarget, by: &str) -> Result<TargetView, ReplicationError> {
    check_scope(app, scope).await?;
    validate_name(&new.name)?;
    validate_description(&new.description)?;
    for (field, value) in [("username", &new.username), ("password", &new.password)] {
        if let Some(v) = value {
            validate_credential(field, v)?;
        }
    }
    let chunk_bytes = validate_chunk(new.chunk_bytes.unwrap_or(DEFAULT_CHUNK_BYTES))?;
    let url = validate_url(app, &new.url).await?;
    let (existing, _) = list(app, scope, None, MAX_PER_SCOPE * 5).await?;
    if existing.len() >= MAX_PER_SCOPE {
        return Err(ReplicationError::Conflict(format!("{scope} has {MAX_PER_SCOPE} replication targets already")));
    }
    let id = format!("rt-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    claim_name(app, "target", scope, &new.name, &id).await?;
    let key = crate::secrets::key(app).await?;
    let now = app.clock.now();
    let target = StoredTarget {
        id: id.clone(),
        registry: scope.to_string(),
        name: new.name.clone(),
        description: new.description,
        kind: new.kind,
        url,
        username: new.username.filter(|u| !u.is_empty()),
        password: match new.password.filter(|p| !p.is_empty()) {
            Some(p) => Some(key.seal(&p, &seal_context(scope, &id))?),
            None => None,
        },
        skip_tls_verify: new.skip_tls_verify,
        chunk_bytes,
        created_at: now,
        updated_at: now,
        created_by: by.to_string(),
    };
    if let Err(e) = TARGETS.put(app.meta.as_ref(), &key_of(scope, &id), &target, Expect::Absent).await {
        release_name(app, "target", scope, &new.name, &id).await;
        return Err(e.into());
    }
    Ok(target.view())
}

/// Applies a change.
pub async fn update(app: &App, scope: &str, id: &str, patch: TargetPatch) -> Result<TargetView, ReplicationError> {
    let (mut target, version) = get(app, scope, id).await?;
    // only a change to how the target is reached makes its policies check it again (and pause
    // their event triggers meanwhile); a new name, description or chunk size does not
    let reached_anew = patch.url.is_some()
        || patch.kind.is_some()
        || patch.username.is_some()
        || patch.password.is_some()
        || patch.skip_tls_verify.is_some();
    if let Some(d) = patch.description {
        validate_description(&d)?;
        target.description = d;
    }
    if let Some(k) = patch.kind {
        target.kind = k;
    }
    if let Some(url) = patch.url {
        target.url = validate_url(app, &url).await?;
    }
    if let Some(u) = patch.username {
        validate_credential("username", &u)?;
        target.username = (!u.is_empty()).then_some(u);
    }
    if let Some(p) = patch.password {
        validate_credential("password", &p)?;
        target.password =
            if p.is_empty() { None } else { Some(crate::secrets::key(app).await?.seal(&p, &seal_context(scope, id))?) };
    }
    if let Some(s) = patch.skip_tls_verify {
        target.skip_tls_verify = s;
    }
    if let Some(c) = patch.chunk_bytes {
        target.chunk_bytes = validate_chunk(c)?;
    }
    let renamed = match patch.name {
        Some(name) if name != target.name => {
            validate_name(&name)?;
            claim_name(app, "target", scope, &name, id).await?;
            Some(std::mem::replace(&mut target.name, name))
        }
        _ => None,
    };
    target.updated_at = app.clock.now();
    match TARGETS.put(app.meta.as_ref(), &key_of(scope, id), &target, Expect::Version(version)).await {
        Ok(_) => {
            if let Some(old) = renamed {
                release_name(app, "target", scope, &old, id).await;
            }
            if reached_anew {
                super::policy::target_changed(app, scope, id).await?;
            }
            Ok(target.view())
        }
        Err(e) => {
            if renamed.is_some() {
                release_name(app, "target", scope, &target.name, id).await;
            }
            Err(match e {
                MetadataError::Conflict(_) => {
                    ReplicationError::Conflict(format!("target {id} changed meanwhile; read it and try again"))
                }
                other => other.into(),
            })
        }
    }
}

/// Deletes a target no policy uses.
pub async fn delete(app: &App, scope: &str, id: &str) -> Result<(), ReplicationError> {
    let (target, version) = get(app, scope, id).await?;
    if let Some(user) = super::policy::first_user_of(app, scope, id).await? {
        return Err(ReplicationError::Conflict(format!(
            "target {id} is used by replication {user}; delete or change that replication first"
        )));
    }
    match TARGETS.delete(app.meta.as_ref(), &key_of(scope, id), Expect::Version(version)).await {
        Ok(true) => {}
        Ok(false) => return Err(ReplicationError::NotFound(format!("replication target {id} of {scope}"))),
        Err(MetadataError::Conflict(_)) => {
            return Err(ReplicationError::Conflict(format!("target {id} changed meanwhile; try again")))
        }
        Err(e) => return Err(e.into()),
    }
    release_name(app, "target", scope, &target.name, id).await;
    Ok(())
}

/// Deletes every target of a deleted registry.
pub async fn forget(app: &App, scope: &str) -> Result<(), ReplicationError> {
    let (targets, _) = list(app, scope, None, MAX_PER_SCOPE * 5).await?;
    for target in targets {
        TARGETS.delete(app.meta.as_ref(), &key_of(scope, &target.id), Expect::Any).await?;
        release_name(app, "target", scope, &target.name, &target.id).await;
    }
    Ok(())
}

/// Who holds a name: one document per name, written only if absent, so two requests racing to
/// create the same name cannot both win.
#[derive(Debug, Serialize, Deserialize)]
struct NameClaim {
    /// the id of the object holding the name
    id: String,
    /// when it was claimed
    at: UnixTime,
}

const NAMES: Collection<NameClaim> = Collection::new("replication-name");

/// How long a claim whose object does not exist (its creation crashed) still holds the name.
const CLAIM_GRACE_SECS: UnixTime = 300;

fn claim_key(what: &str, scope: &str, name: &str) -> String {
    format!("{what}/{scope}/{name}")
}

/// Claims `name` for object `id` of kind `what` ("target" or "policy") in `scope`.
pub(super) async fn claim_name(
    app: &App,
    what: &str,
    scope: &str,
    name: &str,
    id: &str,
) -> Result<(), ReplicationError> {
    let key = claim_key(what, scope, name);
    let now = app.clock.now();
    let claim = NameClaim { id: id.to_string(), at: now };
    let taken = || ReplicationError::Exists(format!("a replication {what} named {name:?} exists in {scope}"));
    match NAMES.put(app.meta.as_ref(), &key, &claim, Expect::Absent).await {
        Ok(_) => return Ok(()),
        Err(MetadataError::Conflict(_)) => {}
        Err(e) => return Err(e.into()),
    }
    // taken: only a stale claim (its object never stored, long enough ago) is taken over
    let Some(held) = NAMES.get(app.meta.as_ref(), &key).await? else {
        return Err(taken());
    };
    let holder_exists = match what {
        "target" => TARGETS.get(app.meta.as_ref(), &key_of(scope, &held.record.id)).await?.is_some(),
        _ => super::policy::exists(app, scope, &held.record.id).await?,
    };
    if held.record.id == id || holder_exists || now - held.record.at < CLAIM_GRACE_SECS {
        return Err(taken());
    }
    match NAMES.put(app.meta.as_ref(), &key, &claim, Expect::Version(held.version)).await {
        Ok(_) => Ok(()),
        Err(MetadataError::Conflict(_)) => Err(taken()),
        Err(e) => Err(e.into()),
    }
}

/// Releases `name` if object `id` holds it (best effort: a leftover claim goes stale).
pub(super) async fn release_name(app: &App, what: &str, scope: &str, name: &str, id: &str) {
    let key = claim_key(what, scope, name);
    if let Ok(Some(held)) = NAMES.get(app.meta.as_ref(), &key).await {
        if held.record.id == id {
            let _ = NAMES.delete(app.meta.as_ref(), &key, Expect::Version(held.version)).await;
        }
    }
}
