//! Webhook policies: what an administrator registers (target, type, events, format, auth header,
//! enabled, TLS verification), validated once here, stored with their secrets sealed.

use serde::{Deserialize, Serialize};

use super::{WebhookError, ALL_REGISTRIES};
use crate::app::App;
use crate::events::EventType;
use crate::metadata::{Collection, Expect, MetadataError, UnixTime};
use crate::sealed::Sealed;

/// Where policies are kept: id `<scope>/<webhook id>`.
pub(super) const POLICIES: Collection<StoredPolicy> = Collection::new("webhook");

/// The most policies one scope (a registry, or all) may have.
pub const MAX_PER_SCOPE: usize = 20;
/// The longest target URL.
pub const MAX_URL_BYTES: usize = 2048;
/// The longest auth header value.
pub const MAX_AUTH_HEADER_BYTES: usize = 4096;

/// How a delivery is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetType {
    /// an HTTP(S) POST of the payload
    Http,
    /// a Slack incoming-webhook message (block kit)
    Slack,
}

/// The payload shape of an `http` target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// Harbor's JSON shape
    Default,
    /// CloudEvents 1.0, structured JSON
    CloudEvents,
}

/// A policy as stored (secrets sealed; never sent to clients as is).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredPolicy {
    /// `wh-<12 hex>`
    pub id: String,
    /// the registry, or [`ALL_REGISTRIES`]
    pub registry: String,
    /// unique within its scope
    pub name: String,
    /// free text
    #[serde(default)]
    pub description: String,
    /// where deliveries go
    pub url: String,
    /// http or slack
    #[serde(rename = "type")]
    pub target: TargetType,
    /// subscribed event types
    pub events: Vec<EventType>,
    /// payload shape (http targets)
    pub format: PayloadFormat,
    /// the `Authorization` header value, sealed
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_header: Option<Sealed>,
    /// the HMAC signing secret, sealed
    pub secret: Sealed,
    /// deliveries happen only while enabled
    pub enabled: bool,
    /// accept any TLS certificate (only when asked)
    pub skip_tls_verify: bool,
    /// when created
    pub created_at: UnixTime,
    /// when last changed
    pub updated_at: UnixTime,
    /// who created it
    pub created_by: String,
}

/// A policy as the API shows it: no secret, no auth header (only whether one is set).
#[derive(Debug, Clone, Serialize)]
pub struct PolicyView {
    /// `wh-<12 hex>`
    pub id: String,
    /// the registry, or `_all`
    pub registry: String,
    /// its name
    pub name: String,
    /// free text
    pub description: String,
    /// target URL
    pub url: String,
    /// http or slack
    #[serde(rename = "type")]
    pub target: TargetType,
    /// subscribed event types
    pub events: Vec<EventType>,
    /// payload shape
    pub format: PayloadFormat,
    /// whether an auth header is set
    pub auth_header_set: bool,
    /// enabled or not
    pub enabled: bool,
    /// TLS verification skipped
    pub skip_tls_verify: bool,
    /// when created
    pub created_at: UnixTime,
    /// when last changed
    pub updated_at: UnixTime,
    /// who created it
    pub created_by: String,
    /// the signing secret: only in the answer that created or rotated it
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl StoredPolicy {
    /// The document id.
    pub fn key(&self) -> String {
        policy_key(&self.registry, &self.id)
    }

    /// What the API shows.
    pub fn view(&self, secret: Option<String>) -> PolicyView {
        PolicyView {
            id: self.id.clone(),
            registry: self.registry.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            url: self.url.clone(),
            target: self.target,
            events: self.events.clone(),
            format: self.format,
            auth_header_set: self.auth_header.is_some(),
            enabled: self.enabled,
            skip_tls_verify: self.skip_tls_verify,
            created_at: self.created_at,
            updated_at: self.updated_at,
            created_by: self.created_by.clone(),
            secret,
        }
    }

    /// Whether a delivery of `kind` is due to this policy.
    pub fn wants(&self, kind: EventType) -> bool {
        self.enabled && self.events.contains(&kind)
    }
}

/// The document id of a policy.
pub fn policy_key(scope: &str, id: &str) -> String {
    format!("{scope}/{id}")
}

/// The sealing context of a policy's secrets (a sealed value copied to another policy does not open).
pub(super) fn seal_context(scope: &str, id: &str, what: &str) -> String {
    format!("webhook:{scope}/{id}:{what}")
}

/// A new policy, as `POST` takes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPolicy {
    /// unique within the scope
    pub name: String,
    /// free text
    #[serde(default)]
    pub description: String,
    /// target URL
    pub url: String,
    /// http (default) or slack
    #[serde(rename = "type", default = "default_target")]
    pub target: TargetType,
    /// event type names; default: every subscribable type
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// default (default) or cloudevents
    #[serde(default = "default_format")]
    pub format: PayloadFormat,
    /// sent as `Authorization`
    #[serde(default)]
    pub auth_header: Option<String>,
    /// default true
    #[serde(default = "yes")]
    pub enabled: bool,
    /// default false
    #[serde(default)]
    pub skip_tls_verify: bool,
}

/// A change, as `PATCH` takes it: every field optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyPatch {
    /// new name
    pub name: Option<String>,
    /// new description
    pub description: Option<String>,
    /// new URL
    pub url: Option<String>,
    /// new type
    #[serde(rename = "type")]
    pub target: Option<TargetType>,
    /// new event types
    pub events: Option<Vec<String>>,
    /// new format
    pub format: Option<PayloadFormat>,
    /// new auth header; `""` removes it
    pub auth_header: Option<String>,
    /// enable or disable
    pub enabled: Option<bool>,
    /// TLS verification
    pub skip_tls_verify: Option<bool>,
    /// issue a new signing secret (shown in the answer)
    #[serde(default)]
    pub rotate_secret: bool,
}

fn default_target() -> TargetType {
    TargetType::Http
}
fn default_format() -> PayloadFormat {
    PayloadFormat::Default
}
fn yes() -> bool {
    true
}

/// Checks a policy name: 1 to 64 letters, digits, spaces, `.`, `_`, `-`.
pub fn validate_name(name: &str) -> Result<(), WebhookError> {
    let ok = !name.trim().is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(WebhookError::Invalid(format!("name {name:?}: use 1 to 64 letters, digits, spaces, '.', '_' or '-'")))
    }
}

/// Parses event type names: non-empty, known, subscribable, no duplicates.
pub fn parse_events(names: &[String]) -> Result<Vec<EventType>, WebhookError> {
    if names.is_empty() {
        return Err(WebhookError::Invalid("events: name at least one event type".into()));
    }
    let mut out = Vec::new();
    for name in names {
        let kind = EventType::parse(name).filter(|k| *k != EventType::Ping).ok_or_else(|| {
            let known: Vec<&str> = EventType::SUBSCRIBABLE.iter().map(|t| t.as_str()).collect();
            WebhookError::Invalid(format!("events: {name:?} is not an event type (one of {})", known.join(", ")))
        })?;
        if out.contains(&kind) {
            return Err(WebhookError::Invalid(format!("events: {name} is listed twice")));
        }
        out.push(kind);
    }
    Ok(out)
}

/// Checks an auth header value: at most 4 KiB, printable, no line breaks (header injection).
pub fn validate_auth_header(value: &str) -> Result<(), WebhookError> {
    if value.len() > MAX_AUTH_HEADER_BYTES {
        return Err(WebhookError::Invalid(format!("auth_header: longer than {MAX_AUTH_HEADER_BYTES} bytes")));
    }
    if value.chars().any(|c| c.is_control()) || http::HeaderValue::from_str(value).is_err() {
        return Err(WebhookError::Invalid("auth_header: control characters (CR, LF …) are not allowed".into()));
    }
    Ok(())
}

/// Checks a target URL's form and that it reaches a permitted address.
/// Returns the URL as it will be requested (normalized), which is what is stored and shown.
pub async fn validate_url(app: &App, url: &str) -> Result<String, WebhookError> {
    if url.len() > MAX_URL_BYTES {
        return Err(WebhookError::Invalid(format!("url: longer than {MAX_URL_BYTES} bytes")));
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(WebhookError::Invalid("url: spaces and control characters (CR, LF, tab …) are not allowed".into()));
    }
    let parsed = app.settings.webhooks.outbound.check_url(url).await.map_err(WebhookError::Outbound)?;
    Ok(parsed.to_string())
}

/// Checks a scope: a registry that exists, or `_all`.
pub async fn check_scope(app: &App, scope: &str) -> Result<(), WebhookError> {
    if scope == ALL_REGISTRIES {
        return Ok(());
    }
    match crate::identity::registry::get(app.meta.as_ref(), scope).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(WebhookError::NoRegistry(scope.to_string())),
        Err(e) => Err(WebhookError::Identity(e)),
    }
}

/// The policies of a scope, in id order.
pub async fn list(
    app: &App,
    scope: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<StoredPolicy>, bool), WebhookError> {
    let prefix = format!("{scope}/");
    let after = after.map(|a| policy_key(scope, a));
    let (items, more) = POLICIES.list(app.meta.as_ref(), &prefix, after.as_deref(), limit).await?;
    Ok((items.into_iter().map(|v| v.record).collect(), more))
}

/// Every policy of a scope.
pub async fn all_of(app: &App, scope: &str) -> Result<Vec<StoredPolicy>, WebhookError> {
    let (items, _) = list(app, scope, None, MAX_PER_SCOPE * 5).await?;
    Ok(items)
}

/// One policy, with its version.
pub async fn get(app: &App, scope: &str, id: &str) -> Result<(StoredPolicy, u64), WebhookError> {
    POLICIES
        .get(app.meta.as_ref(), &policy_key(scope, id))
        .await?
        .map(|v| (v.record, v.version))
        .ok_or_else(|| WebhookError::NotFound(format!("webhook {id} of {scope}")))
}

/// Creates a policy; returns it with its secret (the only time the secret is shown).
pub async fn create(app: &App, scope: &str, new: NewPolicy, by: &str) -> Result<PolicyView, WebhookError> {
    check_scope(app, scope).await?;
    validate_name(&new.name)?;
    let events = match &new.events {
        Some(names) => parse_events(names)?,
        None => EventType::SUBSCRIBABLE.to_vec(),
    };
    if let Some(h) = &new.auth_header {
        validate_auth_header(h)?;
    }
    if new.description.len() > 1024 {
        return Err(WebhookError::Invalid("description: longer than 1024 bytes".into()));
    }
    let url = validate_url(app, &new.url).await?;
    let id = format!("wh-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let now = app.clock.now();
    change_index(app, scope, |index, live| {
        // entries of creations that never stored their policy (a crash) stop counting after a while
        let reserved = index.reserved.clone();
        index.names.retain(|id, _| live.contains(id) || reserved.get(id).is_some_and(|at| now - at < RESERVATION_SECS));
        // (a reservation is kept its full time even once its policy is stored: `live` may be
        // older than the index, and must not make another request drop a fresh entry)
        index.reserved.retain(|_, at| now - *at < RESERVATION_SECS);
        if index.names.values().any(|n| *n == new.name) {
            return Err(WebhookError::Exists(format!("a webhook named {:?} exists in {scope}", new.name)));
        }
        if index.names.len() >= MAX_PER_SCOPE {
            return Err(WebhookError::Invalid(format!(
                "{scope} has {MAX_PER_SCOPE} webhooks already (the most allowed)"
            )));
        }
        index.names.insert(id.clone(), new.name.clone());
        index.reserved.insert(id.clone(), now);
        Ok(())
    })
    .await?;
    let key = crate::secrets::key(app).await?;
    let secret = super::payload::new_secret()?;
    let now = app.clock.now();
    let policy = StoredPolicy {
        id: id.clone(),
        registry: scope.to_string(),
        name: new.name,
        description: new.description,
        url,
        target: new.target,
        events,
        format: new.format,
        auth_header: match &new.auth_header {
            Some(h) if !h.is_empty() => Some(key.seal(h, &seal_context(scope, &id, "auth"))?),
            _ => None,
        },
        secret: key.seal(&secret, &seal_context(scope, &id, "secret"))?,
        enabled: new.enabled,
        skip_tls_verify: new.skip_tls_verify,
        created_at: now,
        updated_at: now,
        created_by: by.to_string(),
    };
    if let Err(e) = POLICIES.put(app.meta.as_ref(), &policy.key(), &policy, Expect::Absent).await {
        let _ = change_index(app, scope, |index, _| {
            index.names.remove(&id);
            Ok(())
        })
        .await;
        return Err(e.into());
    }
    super::subscriptions_changed(app);
    Ok(policy.view(Some(secret)))
}

/// Applies a change; the answer carries the new secret when one was issued.
pub async fn update(app: &App, scope: &str, id: &str, patch: PolicyPatch) -> Result<PolicyView, WebhookError> {
    let (mut policy, version) = get(app, scope, id).await?;
    let renamed_from = match patch.name {
        Some(name) if name != policy.name => {
            validate_name(&name)?;
            change_index(app, scope, |index, _| {
                if index.names.iter().any(|(other, n)| *n == name && other != id) {
                    return Err(WebhookError::Exists(format!("a webhook named {name:?} exists in {scope}")));
                }
                index.names.insert(id.to_string(), name.clone());
                Ok(())
            })
            .await?;
            Some(std::mem::replace(&mut policy.name, name))
        }
        _ => None,
    };
    if let Some(d) = patch.description {
        if d.len() > 1024 {
            return Err(WebhookError::Invalid("description: longer than 1024 bytes".into()));
        }
        policy.description = d;
    }
    if let Some(url) = patch.url {
        policy.url = validate_url(app, &url).await?;
    }
    if let Some(t) = patch.target {
        policy.target = t;
    }
    if let Some(names) = patch.events {
        policy.events = parse_events(&names)?;
    }
    if let Some(f) = patch.format {
        policy.format = f;
    }
    if let Some(e) = patch.enabled {
        policy.enabled = e;
    }
    if let Some(s) = patch.skip_tls_verify {
        policy.skip_tls_verify = s;
    }
    let key = crate::secrets::key(app).await?;
    if let Some(h) = patch.auth_header {
        validate_auth_header(&h)?;
        policy.auth_header = if h.is_empty() { None } else { Some(key.seal(&h, &seal_context(scope, id, "auth"))?) };
    }
    let mut shown = None;
    if patch.rotate_secret {
        let secret = super::payload::new_secret()?;
        policy.secret = key.seal(&secret, &seal_context(scope, id, "secret"))?;
        shown = Some(secret);
    }
    policy.updated_at = app.clock.now();
    let stored = match POLICIES.put(app.meta.as_ref(), &policy.key(), &policy, Expect::Version(version)).await {
        Ok(_) => Ok(()),
        Err(MetadataError::Conflict(_)) => {
            Err(WebhookError::Conflict(format!("webhook {id} changed meanwhile; read it and try again")))
        }
        Err(e) => Err(e.into()),
    };
    if let Err(e) = stored {
        if let Some(old) = renamed_from {
            let _ = change_index(app, scope, |index, _| {
                index.names.insert(id.to_string(), old.clone());
                Ok(())
            })
            .await;
        }
        return Err(e);
    }
    super::subscriptions_changed(app);
    Ok(policy.view(shown))
}

/// Deletes a policy and its delivery log.
pub async fn delete(app: &App, scope: &str, id: &str) -> Result<(), WebhookError> {
    if !POLICIES.delete(app.meta.as_ref(), &policy_key(scope, id), Expect::Any).await? {
        return Err(WebhookError::NotFound(format!("webhook {id} of {scope}")));
    }
    change_index(app, scope, |index, _| {
        index.names.remove(id);
        Ok(())
    })
    .await?;
    super::subscriptions_changed(app);
    super::delivery::forget(app, scope, id).await?;
    Ok(())
}

/// Per scope, the names of its policies by id: the one document that creating, renaming and
/// deleting change by compare-and-swap, so the per-scope limit and unique names hold under
/// concurrent requests (each policy is its own document, which no single write could count).
#[derive(Debug, Default, Serialize, Deserialize)]
struct ScopeIndex {
    /// policy id → name
    names: std::collections::BTreeMap<String, String>,
    /// policy id → when a creation reserved it (until its policy is stored)
    #[serde(default)]
    reserved: std::collections::BTreeMap<String, UnixTime>,
}

/// How long a creation's reservation counts without its policy stored (longer than any request).
const RESERVATION_SECS: UnixTime = 300;

const INDEXES: Collection<ScopeIndex> = Collection::new("webhook-scope");

/// Applies `change` to the scope's index (built from the stored policies when it does not exist
/// yet) and stores it if no other request changed it meanwhile, retrying otherwise. `change` is
/// also given the ids of the policies stored now.
async fn change_index(
    app: &App,
    scope: &str,
    change: impl Fn(&mut ScopeIndex, &[String]) -> Result<(), WebhookError>,
) -> Result<(), WebhookError> {
    for _ in 0..20 {
        let stored = all_of(app, scope).await?;
        let live: Vec<String> = stored.iter().map(|p| p.id.clone()).collect();
        let (mut index, expect) = match INDEXES.get(app.meta.as_ref(), scope).await? {
            Some(v) => (v.record, Expect::Version(v.version)),
            None => {
                let names = stored.into_iter().map(|p| (p.id, p.name)).collect();
                (ScopeIndex { names, reserved: Default::default() }, Expect::Absent)
            }
        };
        change(&mut index, &live)?;
        match INDEXES.put(app.meta.as_ref(), scope, &index, expect).await {
            Ok(_) => return Ok(()),
            Err(MetadataError::Conflict(_)) => tokio::task::yield_now().await,
            Err(e) => return Err(e.into()),
        }
    }
    Err(WebhookError::Conflict(format!("the webhooks of {scope} are being changed by many requests; try again")))
}

/// Deletes every policy of a deleted registry, with their delivery logs, so a registry created
/// again under the name starts without them.
pub async fn forget(app: &App, scope: &str) -> Result<(), WebhookError> {
    for policy in all_of(app, scope).await? {
        delete(app, scope, &policy.id).await?;
    }
    INDEXES.delete(app.meta.as_ref(), scope, Expect::Any).await?;
    Ok(())
}
