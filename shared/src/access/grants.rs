//! What an authenticated request may do: everything its user's role allows (Basic access-key
//! credentials), or exactly what its token lists (Bearer).

use std::sync::Arc;

use crate::auth::jwt::Claims;
use crate::identity::{registry, Action, User};

/// A repository-level permission, as token scopes name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RepoAction {
    /// read manifests and blob bytes
    Pull,
    /// write blobs, manifests and tags
    Push,
    /// delete manifests, tags and blobs
    Delete,
    /// see that something exists (HEAD, tag lists): pull or push is enough
    View,
}

impl RepoAction {
    /// The token scope actions that satisfy this permission.
    pub fn token_actions(self) -> &'static [&'static str] {
        match self {
            RepoAction::Pull => &["pull"],
            RepoAction::Push => &["push"],
            RepoAction::Delete => &["delete"],
            RepoAction::View => &["pull", "push"],
        }
    }

    /// The scope actions a client should request to get this permission.
    pub fn challenge_actions(self) -> &'static str {
        match self {
            RepoAction::Pull | RepoAction::View => "pull",
            RepoAction::Push => "pull,push",
            RepoAction::Delete => "delete",
        }
    }

    /// The role-table actions that satisfy this permission.
    pub fn role_actions(self) -> &'static [Action] {
        match self {
            RepoAction::Pull => &[Action::PullImages],
            RepoAction::Push => &[Action::PushImages],
            RepoAction::Delete => &[Action::DeleteArtifacts],
            RepoAction::View => &[Action::ViewImages],
        }
    }
}

/// The permissions of one authenticated request; handlers find it in the request extensions.
#[derive(Debug, Clone)]
pub enum Grants {
    /// Basic credentials: the user's role, applied directly
    User(Arc<User>),
    /// a Bearer token: only what it lists
    Token(Arc<Claims>),
}

impl Grants {
    /// The user name behind the request (for audit and logs).
    pub fn principal(&self) -> &str {
        match self {
            Grants::User(u) => &u.name,
            Grants::Token(c) => &c.sub,
        }
    }

    /// Whether the request may do `action` on `repository`.
    pub fn allows(&self, repository: &str, action: RepoAction) -> bool {
        match self {
            Grants::User(user) => {
                let reg = registry::of_repository(repository);
                action.role_actions().iter().any(|a| user.may(*a, Some(reg)))
            }
            Grants::Token(claims) => claims.access.iter().any(|a| {
                a.kind == "repository"
                    && a.name == repository
                    && a.actions.iter().any(|x| x == "*" || action.token_actions().contains(&x.as_str()))
            }),
        }
    }

    /// Whether the token says the principal asked for this and was refused it (so a new token
    /// would not help and the answer is 403, not a 401 challenge).
    pub fn refused(&self, repository: &str, action: RepoAction) -> bool {
        match self {
            Grants::User(_) => true,
            Grants::Token(claims) => claims.refused.iter().any(|a| {
                a.kind == "repository"
                    && a.name == repository
                    && a.actions.iter().any(|x| action.token_actions().contains(&x.as_str()))
            }),
        }
    }

    /// Whether the request may list the catalog.
    pub fn allows_catalog(&self) -> bool {
        match self {
            Grants::User(user) => user.registries.is_none() && user.may(Action::ViewImages, None),
            Grants::Token(claims) => claims
                .access
                .iter()
                .any(|a| a.kind == "registry" && a.name == "catalog" && a.actions.iter().any(|x| x == "*")),
        }
    }
}
