//! Users: a name, one role, and the registries it applies to (all of them when unset).

use serde::{Deserialize, Serialize};

use super::{IdentityError, Role};
use crate::metadata::{Collection, Documents, Expect, MetadataError, UnixTime};

/// Users by name.
pub const USERS: Collection<User> = Collection::new("user");

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// login name
    pub name: String,
    /// permission family
    pub role: Role,
    /// registries the role applies to; `None` = every registry
    #[serde(default)]
    pub registries: Option<Vec<String>>,
    /// bumped whenever the role or registries change, so tokens issued before no longer count
    #[serde(default)]
    pub generation: u64,
    /// ids of the user's access keys (kept here so the per-user limit holds under concurrency)
    #[serde(default)]
    pub keys: Vec<String>,
    /// when it was created
    pub created_at: UnixTime,
    /// who created it
    pub created_by: String,
}

impl User {
    /// Whether the user's role covers `registry`.
    pub fn covers(&self, registry: &str) -> bool {
        self.registries.as_ref().is_none_or(|list| list.iter().any(|r| r == registry))
    }

    /// Whether the user may do `action` in `registry` (`None`: an action not tied to one registry).
    pub fn may(&self, action: super::Action, registry: Option<&str>) -> bool {
        self.role.allows(action) && registry.is_none_or(|r| self.covers(r))
    }
}

/// Checks a user name: 1-64 characters of letters, digits, `.`, `_`, `-`, `@`, not only dots
/// (`.` and `..` in a URL path name the path itself or its parent, never a user).
pub fn validate_name(name: &str) -> Result<(), IdentityError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
        && !name.bytes().all(|b| b == b'.');
    if ok {
        Ok(())
    } else {
        Err(IdentityError::Invalid(format!(
            "user name {name:?} is invalid: use 1-64 letters, digits, '.', '_', '-' or '@', not only dots"
        )))
    }
}

/// Creates a user; `AlreadyExists` if the name is taken.
pub async fn create(
    meta: &dyn Documents,
    name: &str,
    role: Role,
    registries: Option<Vec<String>>,
    created_by: &str,
    now: UnixTime,
) -> Result<User, IdentityError> {
    validate_name(name)?;
    if let Some(list) = &registries {
        for r in list {
            super::registry::validate_name(r)?;
        }
    }
    let user = User {
        name: name.to_string(),
        role,
        registries,
        generation: 0,
        keys: vec![],
        created_at: now,
        created_by: created_by.to_string(),
    };
    match USERS.put(meta, name, &user, Expect::Absent).await {
        Ok(_) => Ok(user),
        Err(MetadataError::Conflict(_)) => Err(IdentityError::AlreadyExists { kind: "user", name: name.to_string() }),
        Err(e) => Err(e.into()),
    }
}

/// A user by name, with its document version.
pub async fn get_versioned(meta: &dyn Documents, name: &str) -> Result<Option<(User, u64)>, IdentityError> {
    Ok(USERS.get(meta, name).await?.map(|v| (v.record, v.version)))
}

/// A user by name.
pub async fn get(meta: &dyn Documents, name: &str) -> Result<Option<User>, IdentityError> {
    Ok(get_versioned(meta, name).await?.map(|(u, _)| u))
}

/// Users after `after`, at most `limit`, and whether more exist.
pub async fn list(meta: &dyn Documents, after: Option<&str>, limit: usize) -> Result<(Vec<User>, bool), IdentityError> {
    let (items, more) = USERS.list(meta, "", after, limit).await?;
    Ok((items.into_iter().map(|v| v.record).collect(), more))
}

/// Writes a changed user if nobody changed it since `version`.
pub async fn replace(meta: &dyn Documents, user: &User, version: u64) -> Result<(), IdentityError> {
    USERS.put(meta, &user.name, user, Expect::Version(version)).await?;
    Ok(())
}

/// Changes a user's role and registries.
pub async fn set_role(
    meta: &dyn Documents,
    name: &str,
    role: Role,
    registries: Option<Vec<String>>,
) -> Result<User, IdentityError> {
    loop {
        let (mut user, version) =
            get_versioned(meta, name).await?.ok_or_else(|| IdentityError::UserUnknown(name.to_string()))?;
        user.role = role;
        user.registries = registries.clone();
        user.generation += 1;
        match replace(meta, &user, version).await {
            Err(IdentityError::Metadata(MetadataError::Conflict(_))) => continue,
            other => return other.map(|()| user),
        }
    }
}

/// Deletes a user and all its access keys.
pub async fn delete(meta: &dyn Documents, name: &str) -> Result<bool, IdentityError> {
    let Some(user) = get(meta, name).await? else { return Ok(false) };
    for key in &user.keys {
        super::key::KEYS.delete(meta, key, Expect::Any).await?;
    }
    Ok(USERS.delete(meta, name, Expect::Any).await?)
}

#[cfg(test)]
mod tests {
    use super::validate_name;

    #[test]
    fn user_names_are_checked() {
        for ok in ["ci", "a.b", "ops@example.com", "x...y", ".hidden"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(65);
        for bad in ["", ".", "..", "...", "a b", "a/b", "<b>", long.as_str()] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
