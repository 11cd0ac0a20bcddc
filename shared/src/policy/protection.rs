//! Image protection (tag immutability): per-registry rules of an image pattern and a tag
//! pattern. A tag a rule protects cannot be pointed at another digest, moved or deleted, and its
//! artifact cannot be deleted: not by a client, the management API or cleanup. Re-pushing the
//! digest a protected tag already names is allowed, and signature and referrer-fallback tags
//! (`sha256-<hex>`, with `.sig`, `.att` or `.sbom`) are never protected, so signing keeps working.

use serde::{Deserialize, Serialize};

use super::pattern::{Pattern, PatternError};
use crate::app::App;
use crate::identity::registry;
use crate::metadata::{Collection, Documents, Expect, MetadataError, UnixTime};
use crate::oci::{Digest, RepoName, Tag};

/// Protection policies, one per registry (id = registry).
const POLICIES: Collection<StoredPolicy> = Collection::new("protection-policies");

/// The most rules one registry may have (Harbor's limit).
pub const MAX_RULES: usize = 15;

/// Why a protection operation failed or was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProtectionError {
    /// The change would alter what a protection rule protects.
    #[error("{what} is protected by image protection rule {rule} (image {image:?}, tag {tag:?}); disable or delete the rule first")]
    Protected {
        /// what was to change, e.g. `tag app:1.0`
        what: String,
        /// the rule's id
        rule: String,
        /// the rule's image pattern
        image: String,
        /// the rule's tag pattern
        tag: String,
    },
    /// A pattern is invalid.
    #[error(transparent)]
    Pattern(#[from] PatternError),
    /// A rule with the same image and tag exists.
    #[error("registry {registry} already has protection rule {rule} for image {image:?} and tag {tag:?}")]
    Duplicate {
        /// the registry
        registry: String,
        /// the existing rule
        rule: String,
        /// its image pattern
        image: String,
        /// its tag pattern
        tag: String,
    },
    /// The registry has [`MAX_RULES`] rules.
    #[error("registry {0} already has the maximum of {MAX_RULES} protection rules")]
    TooMany(String),
    /// No such rule.
    #[error("registry {registry} has no protection rule {rule}")]
    UnknownRule {
        /// the registry
        registry: String,
        /// the rule id asked for
        rule: String,
    },
    /// The metadata store failed.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

/// One protection rule as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtectionRule {
    /// stable id within the registry (`p1`, `p2`, …)
    pub id: String,
    /// image pattern, matched against the image name without the registry (`app/**`)
    pub image: String,
    /// tag pattern (`v*`, `{1.0,1.1}`)
    pub tag: String,
    /// disabled rules protect nothing
    pub enabled: bool,
    /// when the rule was added
    pub created_at: UnixTime,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StoredPolicy {
    rules: Vec<ProtectionRule>,
    next_id: u64,
}

async fn load(meta: &dyn Documents, registry: &str) -> Result<(StoredPolicy, Expect), ProtectionError> {
    match POLICIES.get(meta, registry).await? {
        None => Ok((StoredPolicy::default(), Expect::Absent)),
        Some(stored) => Ok((stored.record, Expect::Version(stored.version))),
    }
}

async fn store(
    meta: &dyn Documents,
    registry: &str,
    policy: &StoredPolicy,
    expect: Expect,
) -> Result<(), ProtectionError> {
    POLICIES.put(meta, registry, policy, expect).await?;
    Ok(())
}

/// The rules of a registry, in creation order.
pub async fn list(meta: &dyn Documents, registry: &str) -> Result<Vec<ProtectionRule>, ProtectionError> {
    Ok(load(meta, registry).await?.0.rules)
}

/// Adds an enabled rule; identical (image, tag) rules are refused.
pub async fn add(
    meta: &dyn Documents,
    registry: &str,
    image: &str,
    tag: &str,
    now: UnixTime,
) -> Result<ProtectionRule, ProtectionError> {
    Pattern::parse(image)?;
    Pattern::parse(tag)?;
    loop {
        let (mut policy, expect) = load(meta, registry).await?;
        if let Some(same) = policy.rules.iter().find(|r| r.image == image && r.tag == tag) {
            return Err(ProtectionError::Duplicate {
                registry: registry.to_string(),
                rule: same.id.clone(),
                image: image.to_string(),
                tag: tag.to_string(),
            });
        }
        if policy.rules.len() >= MAX_RULES {
            return Err(ProtectionError::TooMany(registry.to_string()));
        }
        policy.next_id += 1;
        let rule = ProtectionRule {
            id: format!("p{}", policy.next_id),
            image: image.to_string(),
            tag: tag.to_string(),
            enabled: true,
            created_at: now,
        };
        policy.rules.push(rule.clone());
        match store(meta, registry, &policy, expect).await {
            Err(ProtectionError::Metadata(MetadataError::Conflict(_))) => continue,
            other => return other.map(|()| rule),
        }
    }
}

/// Enables or disables a rule.
pub async fn set_enabled(
    meta: &dyn Documents,
    registry: &str,
    id: &str,
    enabled: bool,
) -> Result<ProtectionRule, ProtectionError> {
    loop {
        let (mut policy, expect) = load(meta, registry).await?;
        let Some(rule) = policy.rules.iter_mut().find(|r| r.id == id) else {
            return Err(ProtectionError::UnknownRule { registry: registry.to_string(), rule: id.to_string() });
        };
        rule.enabled = enabled;
        let rule = rule.clone();
        match store(meta, registry, &policy, expect).await {
            Err(ProtectionError::Metadata(MetadataError::Conflict(_))) => continue,
            other => return other.map(|()| rule),
        }
    }
}

/// Deletes a rule.
pub async fn remove(meta: &dyn Documents, registry: &str, id: &str) -> Result<ProtectionRule, ProtectionError> {
    loop {
        let (mut policy, expect) = load(meta, registry).await?;
        let Some(at) = policy.rules.iter().position(|r| r.id == id) else {
            return Err(ProtectionError::UnknownRule { registry: registry.to_string(), rule: id.to_string() });
        };
        let rule = policy.rules.remove(at);
        match store(meta, registry, &policy, expect).await {
            Err(ProtectionError::Metadata(MetadataError::Conflict(_))) => continue,
            other => return other.map(|()| rule),
        }
    }
}

/// Removes every rule of a deleted registry.
pub async fn forget(meta: &dyn Documents, registry: &str) -> Result<(), ProtectionError> {
    POLICIES.delete(meta, registry, Expect::Any).await?;
    Ok(())
}

/// Whether a tag is a signature or referrer-fallback tag (`sha256-<64 hex>`, optionally with
/// `.sig`, `.att` or `.sbom`): never protected, so cosign can sign and attach again.
pub fn is_exempt(tag: &str) -> bool {
    crate::oci::accessory_subject(tag).is_some()
}

/// The enabled rules of one registry, compiled: what every protected operation consults.
#[derive(Debug, Default)]
pub struct Protection {
    rules: Vec<(Pattern, Pattern, ProtectionRule)>,
}

impl Protection {
    /// Loads and compiles the enabled rules of `registry`.
    pub async fn load(meta: &dyn Documents, registry: &str) -> Result<Protection, ProtectionError> {
        Ok(Protection::of(load(meta, registry).await?.0.rules))
    }

    /// Compiles rules (disabled ones and unparsable stored patterns are skipped).
    pub fn of(rules: Vec<ProtectionRule>) -> Protection {
        let rules = rules
            .into_iter()
            .filter(|r| r.enabled)
            .filter_map(|r| Some((Pattern::parse(&r.image).ok()?, Pattern::parse(&r.tag).ok()?, r)))
            .collect();
        Protection { rules }
    }

    /// Whether no rule is enabled.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule protecting `tag` of `image` (image name without the registry), if any.
    pub fn protecting(&self, image: &str, tag: &str) -> Option<&ProtectionRule> {
        if is_exempt(tag) {
            return None;
        }
        self.rules.iter().find(|(i, t, _)| i.matches(image) && t.matches(tag)).map(|(_, _, r)| r)
    }

    /// The first of `tags` a rule protects, with the rule.
    pub fn protecting_any<'a>(&self, image: &str, tags: &'a [String]) -> Option<(&'a str, &ProtectionRule)> {
        tags.iter().find_map(|t| self.protecting(image, t).map(|r| (t.as_str(), r)))
    }
}

/// The image name without its registry (`e2e/app/web` → `app/web`): what image patterns match.
pub fn image_of(repo: &RepoName) -> &str {
    let name = repo.as_str();
    let registry = registry::of_repository(name);
    name.get(registry.len() + 1..).unwrap_or(name)
}

fn refused(what: String, rule: &ProtectionRule) -> ProtectionError {
    ProtectionError::Protected { what, rule: rule.id.clone(), image: rule.image.clone(), tag: rule.tag.clone() }
}

/// Refuses pointing `tag` at `digest` when the tag exists on another digest and is protected.
/// A new tag, or the same digest again, is always allowed.
pub async fn check_tag_write(app: &App, repo: &RepoName, tag: &Tag, digest: &Digest) -> Result<(), ProtectionError> {
    let current = app.meta.resolve_tag(repo, tag).await?;
    match current {
        Some(record) if &record.digest != digest => {
            let rules = Protection::load(app.meta.as_ref(), registry::of_repository(repo.as_str())).await?;
            match rules.protecting(image_of(repo), tag.as_str()) {
                Some(rule) => Err(refused(format!("tag {repo}:{tag} (on {})", record.digest), rule)),
                None => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// Refuses deleting a protected tag.
pub async fn check_tag_delete(app: &App, repo: &RepoName, tag: &Tag) -> Result<(), ProtectionError> {
    let rules = Protection::load(app.meta.as_ref(), registry::of_repository(repo.as_str())).await?;
    match rules.protecting(image_of(repo), tag.as_str()) {
        Some(rule) if app.meta.resolve_tag(repo, tag).await?.is_some() => {
            Err(refused(format!("tag {repo}:{tag}"), rule))
        }
        _ => Ok(()),
    }
}

/// Refuses deleting an artifact that carries a protected tag.
pub async fn check_artifact_delete(app: &App, repo: &RepoName, digest: &Digest) -> Result<(), ProtectionError> {
    let rules = Protection::load(app.meta.as_ref(), registry::of_repository(repo.as_str())).await?;
    if rules.is_empty() {
        return Ok(());
    }
    let tags = app.meta.tags_of(repo, digest).await?;
    match rules.protecting_any(image_of(repo), &tags) {
        Some((tag, rule)) => Err(refused(format!("artifact {repo}@{digest} (tag {tag})"), rule)),
        None => Ok(()),
    }
}

/// Refuses deleting a whole image while any of its tags is protected.
pub async fn check_image_delete(app: &App, repo: &RepoName) -> Result<(), ProtectionError> {
    let rules = Protection::load(app.meta.as_ref(), registry::of_repository(repo.as_str())).await?;
    if rules.is_empty() {
        return Ok(());
    }
    let mut last: Option<String> = None;
    loop {
        let Some(page) = app.meta.list_tags(repo, last.as_deref(), 1000).await? else {
            return Ok(());
        };
        if let Some((tag, rule)) = rules.protecting_any(image_of(repo), &page.items) {
            return Err(refused(format!("image {repo} (tag {tag})"), rule));
        }
        if !page.more {
            return Ok(());
        }
        last = page.items.last().cloned();
        if last.is_none() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, image: &str, tag: &str, enabled: bool) -> ProtectionRule {
        ProtectionRule { id: id.into(), image: image.into(), tag: tag.into(), enabled, created_at: 0 }
    }

    #[test]
    fn signature_and_fallback_tags_are_exempt() {
        let hex = "a".repeat(64);
        for t in [
            format!("sha256-{hex}"),
            format!("sha256-{hex}.sig"),
            format!("sha256-{hex}.att"),
            format!("sha256-{hex}.sbom"),
        ] {
            assert!(is_exempt(&t), "{t}");
        }
        for t in ["sha256-abc", "latest", &format!("sha256-{hex}.tar"), &format!("sha256-{}", "G".repeat(64))] {
            assert!(!is_exempt(t), "{t}");
        }
        let p = Protection::of(vec![rule("p1", "**", "**", true)]);
        assert!(p.protecting("app", &format!("sha256-{hex}.sig")).is_none());
        assert_eq!(p.protecting("app", "v1").map(|r| r.id.as_str()), Some("p1"));
    }

    #[test]
    fn disabled_rules_protect_nothing() {
        let p = Protection::of(vec![rule("p1", "app", "v1", false)]);
        assert!(p.is_empty());
        assert!(p.protecting("app", "v1").is_none());
    }
}
