//! Registries: the namespace every image lives in (`host/<registry>/<image>:<tag>`), with its
//! public-access setting and the networks that count as private.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::IdentityError;
use crate::metadata::{Collection, Documents, Expect, MetadataError, UnixTime};
use crate::oci::RepoName;

/// Registries by name.
pub const REGISTRIES: Collection<Registry> = Collection::new("registry");

/// A registry as stored and shown by the management API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    /// the first segment of its images' names
    pub name: String,
    /// when it was created
    pub created_at: UnixTime,
    /// who created it
    pub created_by: String,
    /// whether requests from outside `private_networks` are served
    pub public_access: bool,
    /// source networks that count as private (used when public access is off)
    #[serde(default)]
    pub private_networks: Vec<IpNet>,
    /// the image cache whose source this registry serves (a cache-type registry: pull only)
    #[serde(default)]
    pub cache: Option<String>,
}

impl Registry {
    /// Whether a request from `source` may reach this registry; unknown sources count as public.
    pub fn admits(&self, source: Option<IpAddr>) -> bool {
        self.public_access || source.is_some_and(|ip| self.private_networks.iter().any(|n| n.contains(&ip)))
    }
}

/// Checks a registry name: one OCI path component, 1 to 63 characters.
pub fn validate_name(name: &str) -> Result<(), IdentityError> {
    let component_ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
        && !name.contains("..")
        && !name.contains("___")
        && !name.contains(".-")
        && !name.contains("-.")
        && !name.contains("._")
        && !name.contains("_.");
    if component_ok {
        Ok(())
    } else {
        Err(IdentityError::Invalid(format!(
            "registry name {name:?} is invalid: use 1-63 lowercase letters, digits and single '.', '_' or '-' separators, \
             starting and ending with a letter or digit"
        )))
    }
}

/// Creates a registry; `AlreadyExists` if the name is taken.
pub async fn create(
    meta: &dyn Documents,
    name: &str,
    public_access: bool,
    private_networks: Vec<IpNet>,
    created_by: &str,
    now: UnixTime,
) -> Result<Registry, IdentityError> {
    create_record(
        meta,
        Registry {
            name: name.to_string(),
            created_at: now,
            created_by: created_by.to_string(),
            public_access,
            private_networks,
            cache: None,
        },
    )
    .await
}

/// Creates the registry `registry` describes; `AlreadyExists` if the name is taken.
pub async fn create_record(meta: &dyn Documents, registry: Registry) -> Result<Registry, IdentityError> {
    validate_name(&registry.name)?;
    match REGISTRIES.put(meta, &registry.name, &registry, Expect::Absent).await {
        Ok(_) => Ok(registry),
        Err(MetadataError::Conflict(_)) => {
            Err(IdentityError::AlreadyExists { kind: "registry", name: registry.name.clone() })
        }
        Err(e) => Err(e.into()),
    }
}

/// A registry by name.
pub async fn get(meta: &dyn Documents, name: &str) -> Result<Option<Registry>, IdentityError> {
    Ok(REGISTRIES.get(meta, name).await?.map(|v| v.record))
}

/// Registries after `after`, at most `limit`, and whether more exist.
pub async fn list(
    meta: &dyn Documents,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<Registry>, bool), IdentityError> {
    let (items, more) = REGISTRIES.list(meta, "", after, limit).await?;
    Ok((items.into_iter().map(|v| v.record).collect(), more))
}

/// Changes the access settings of a registry.
pub async fn set_access(
    meta: &dyn Documents,
    name: &str,
    public_access: Option<bool>,
    private_networks: Option<Vec<IpNet>>,
) -> Result<Registry, IdentityError> {
    loop {
        let stored =
            REGISTRIES.get(meta, name).await?.ok_or_else(|| IdentityError::RegistryUnknown(name.to_string()))?;
        let mut registry = stored.record;
        if let Some(p) = public_access {
            registry.public_access = p;
        }
        if let Some(n) = private_networks.clone() {
            registry.private_networks = n;
        }
        match REGISTRIES.put(meta, name, &registry, Expect::Version(stored.version)).await {
            Ok(_) => return Ok(registry),
            Err(MetadataError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Removes the registry record; the caller has emptied it (or checked it is empty) first.
pub async fn remove(meta: &dyn Documents, name: &str) -> Result<bool, IdentityError> {
    Ok(REGISTRIES.delete(meta, name, Expect::Any).await?)
}

/// The registry segment of a repository name (`team` of `team/app/web`).
pub fn of_repository(repository: &str) -> &str {
    repository.split('/').next().unwrap_or(repository)
}

/// The images of a registry, page by page (for the jobs that walk one: cleanup, signature checks).
pub async fn images_of(
    meta: &dyn crate::metadata::MetadataStore,
    registry: &str,
) -> Result<Vec<RepoName>, MetadataError> {
    let prefix = format!("{registry}/");
    let mut last = prefix.clone();
    let mut out = vec![];
    loop {
        let page = meta.list_repositories(Some(&last), 1000).await?;
        let mut done = !page.more;
        for name in &page.items {
            if !name.starts_with(&prefix) {
                done = true;
                break;
            }
            match RepoName::parse(name, None) {
                Ok(r) => out.push(r),
                Err(e) => tracing::warn!(repository = %name, error = %e, "skipping an unparsable repository name"),
            }
        }
        match page.items.last() {
            Some(l) if !done => last = l.clone(),
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "team", "my-team", "a.b_c", "0x1"] {
            validate_name(ok).unwrap();
        }
        for bad in ["", "Team", "-a", "a-", "a/b", "a..b", "a b", &"x".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert_eq!(of_repository("team/app/web"), "team");
    }

    #[test]
    fn private_networks_admit_only_their_sources() {
        let r = Registry {
            name: "t".into(),
            created_at: 0,
            created_by: "a".into(),
            public_access: false,
            private_networks: vec!["10.0.0.0/8".parse().unwrap()],
            cache: None,
        };
        assert!(r.admits(Some("10.1.2.3".parse().unwrap())));
        assert!(!r.admits(Some("192.0.2.1".parse().unwrap())));
        assert!(!r.admits(None));
    }
}
