//! The one authorization decision per request: what the route needs ([`Gate`]), whether the
//! registry exists and admits the caller's network, and whether the credentials cover it.

use super::{client_ip, login, AccessError, Challenge, Grants, RepoAction};
use crate::app::App;
use crate::identity::{registry, Action, Registry, User};
use crate::oci::{RepoName, UploadId};
use crate::web::Query;

/// What a route needs before its handler may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// nothing (the token endpoint authenticates by itself)
    Public,
    /// any valid credentials
    SignedIn,
    /// the repository catalog (`registry:catalog:*`)
    Catalog,
    /// a permission on one repository
    Repo {
        /// the repository
        repository: String,
        /// the permission
        action: RepoAction,
    },
    /// a role-table action, within one registry or not tied to one
    Role {
        /// the action
        action: Action,
        /// the registry it touches, if one
        registry: Option<String>,
    },
    /// an administrator over every registry (users, the audit log)
    Admin,
    /// the named user themself, or an administrator (their own access keys)
    SelfOrAdmin {
        /// the user concerned
        user: String,
    },
}

/// The user behind the grants: Basic credentials carry it; a token names it.
pub async fn user_of(app: &App, grants: &Grants) -> Result<std::sync::Arc<User>, AccessError> {
    match grants {
        Grants::User(u) => Ok(u.clone()),
        Grants::Token(claims) => crate::identity::user::get(app.meta.as_ref(), &claims.sub)
            .await?
            .map(std::sync::Arc::new)
            .ok_or_else(|| AccessError::Unauthenticated(format!("user {:?} no longer exists", claims.sub))),
    }
}

fn is_admin(user: &User) -> bool {
    user.registries.is_none() && Action::ALL.iter().all(|a| user.role.allows(*a))
}

/// A refused request: the error and, for 401, the challenge to send.
#[derive(Debug)]
pub struct Refusal {
    /// why
    pub error: AccessError,
    /// `WWW-Authenticate` for 401 answers
    pub challenge: Option<Challenge>,
    /// the authenticated principal that was refused, when there was one (for the audit log)
    pub who: Option<String>,
}

impl From<AccessError> for Refusal {
    fn from(error: AccessError) -> Refusal {
        Refusal { error, challenge: None, who: None }
    }
}

/// Registry `name` as this process last read it (a short cache the edge and handlers share).
pub async fn registry_of(app: &App, name: &str) -> Result<Option<Registry>, AccessError> {
    if let Some((hit, _)) = app.access.registries.get(name) {
        return Ok(hit);
    }
    let fresh = registry::get(app.meta.as_ref(), name).await?;
    app.access.registries.insert(name, fresh.clone());
    Ok(fresh)
}

/// The absolute URL of the token endpoint as this request reached us.
pub fn realm(app: &App, head: &http::request::Parts) -> String {
    if let Some(url) = &app.settings.public_url {
        return format!("{}/auth/token", url.trim_end_matches('/'));
    }
    // the Host header goes into a quoted header parameter: only a plausible host[:port] is used
    let host = head
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_'))
        })
        .unwrap_or("localhost");
    let proto = head
        .headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http");
    format!("{proto}://{host}/auth/token")
}

fn challenge(app: &App, head: &http::request::Parts, need: &Need, error: Option<&'static str>) -> Challenge {
    let scope = match need {
        Need::Catalog => Some("registry:catalog:*".to_string()),
        Need::Repo { repository, action } => {
            // a mirror host's clients name repositories without the cache registry
            let named = super::token_service::mirror_registry(app, head)
                .and_then(|r| repository.strip_prefix(r).and_then(|rest| rest.strip_prefix('/')))
                .unwrap_or(repository);
            Some(format!("repository:{named}:{}", action.challenge_actions()))
        }
        Need::Role { .. } | Need::Admin | Need::SelfOrAdmin { .. } => Some(MANAGEMENT_SCOPE.to_string()),
        Need::Public | Need::SignedIn => None,
    };
    Challenge { realm: realm(app, head), service: app.settings.token_service.clone(), scope, error }
}

/// The token scope a Bearer token needs for the management API (`/api/v1`): registry tokens
/// carry repository scopes only, and a token minted for management still acts with its user's
/// current role.
pub const MANAGEMENT_SCOPE: &str = "registry:management:*";

/// Whether the grants may call the management API at all: Basic credentials may; a token only
/// when it was minted with [`MANAGEMENT_SCOPE`].
fn reaches_management(grants: &Grants) -> bool {
    match grants {
        Grants::User(_) => true,
        Grants::Token(claims) => claims
            .access
            .iter()
            .any(|a| a.kind == "registry" && a.name == "management" && a.actions.iter().any(|x| x == "*")),
    }
}

/// What the edge checks for one request, as its route describes it (the API layer builds it;
/// this module knows no routes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate<'a> {
    /// what the route needs
    pub need: Need,
    /// the repository and session of an upload-session route, whose `_state` token may stand
    /// in for credentials
    pub upload_session: Option<(&'a RepoName, &'a UploadId)>,
    /// whether the request creates credentials or changes what a user may do: a token may do
    /// that only while its access key and user are unchanged *now*, not as of the last check
    pub changes_credentials: bool,
}

/// An upload-session request holding only a valid `_state` token (clients drop `Authorization`
/// when the upload gateway is another host): it acts as the session's owner, whose account must
/// still exist and whose role is checked like any request's. `None` when the route or request
/// carries no such token.
async fn session_capability(
    app: &App,
    gate: &Gate<'_>,
    head: &http::request::Parts,
) -> Result<Option<Grants>, AccessError> {
    let (Some(tokens), Some((name, id))) = (&app.settings.upload_tokens, gate.upload_session) else {
        return Ok(None);
    };
    let Some(token) = Query::of(head).get("_state").map(str::to_string) else { return Ok(None) };
    let Ok(owner) = tokens.verify(&token, name, id, app.clock.now()) else { return Ok(None) };
    match crate::identity::user::get(app.meta.as_ref(), &owner).await? {
        Some(user) => Ok(Some(Grants::User(std::sync::Arc::new(user)))),
        None => {
            Err(AccessError::Unauthenticated(format!("the user {owner:?} who opened this upload no longer exists")))
        }
    }
}

/// Decides whether the request may proceed; its grants go into the request extensions.
pub async fn authorize(app: &App, gate: &Gate<'_>, head: &http::request::Parts) -> Result<Option<Grants>, Refusal> {
    let need = gate.need.clone();
    if need == Need::Public {
        return Ok(None);
    }
    let source = client_ip::of(head);
    let authenticated = match login::authenticate(app, head).await {
        Ok(None) => session_capability(app, gate, head).await,
        other => other,
    };
    let grants = match authenticated {
        Ok(Some(grants)) => grants,
        Ok(None) => {
            return Err(Refusal {
                error: AccessError::Unauthenticated("authentication required".into()),
                challenge: Some(challenge(app, head, &need, None)),
                who: None,
            })
        }
        Err(AccessError::Unauthenticated(why)) => {
            return Err(Refusal {
                error: AccessError::Unauthenticated(why),
                challenge: Some(challenge(app, head, &need, Some("invalid_token"))),
                who: None,
            })
        }
        Err(e) => return Err(e.into()),
    };
    match permit(app, gate, head, &need, &grants, source).await {
        Ok(()) => Ok(Some(grants)),
        Err(mut refusal) => {
            refusal.who = Some(grants.principal().to_string());
            Err(refusal)
        }
    }
}

/// Whether authenticated `grants` satisfy `need`. Permission is decided before anything about
/// the target is revealed: a caller whose role does not cover a registry gets the same answer
/// whether it exists, is private or is missing.
async fn permit(
    app: &App,
    gate: &Gate<'_>,
    head: &http::request::Parts,
    need: &Need,
    grants: &Grants,
    source: Option<std::net::IpAddr>,
) -> Result<(), Refusal> {
    if matches!(need, Need::Role { .. } | Need::Admin | Need::SelfOrAdmin { .. }) {
        if !reaches_management(grants) {
            return Err(Refusal {
                error: AccessError::InsufficientScope(format!(
                    "the management API (a registry token does not reach it; use Basic credentials or a token for {MANAGEMENT_SCOPE})"
                )),
                challenge: Some(challenge(app, head, need, Some("insufficient_scope"))),
                who: None,
            });
        }
        if let Grants::Token(claims) = grants {
            if gate.changes_credentials && !login::token_holder_is_current(app, claims, true).await? {
                return Err(Refusal {
                    error: AccessError::Unauthenticated(
                        "token refused: its access key or user changed since it was issued".into(),
                    ),
                    challenge: Some(challenge(app, head, need, Some("invalid_token"))),
                    who: None,
                });
            }
        }
    }
    match need {
        Need::Public | Need::SignedIn => {}
        Need::Catalog => {
            if !grants.allows_catalog() {
                return Err(insufficient(app, head, need, grants, "the repository catalog"));
            }
        }
        Need::Repo { repository, action } => {
            if !grants.allows(repository, *action) {
                let what = format!("{} on {repository}", action.challenge_actions());
                return Err(insufficient(app, head, need, grants, &what));
            }
            let reg_name = registry::of_repository(repository);
            let Some(reg) = registry_of(app, reg_name).await? else {
                return Err(AccessError::RegistryUnknown(reg_name.to_string()).into());
            };
            if !reg.admits(source) {
                return Err(AccessError::Denied(format!(
                    "registry {reg_name:?} does not allow public access and {} is not one of its private networks",
                    source.map_or("this client".to_string(), |ip| ip.to_string())
                ))
                .into());
            }
            if let (Some(cache), RepoAction::Push) = (&reg.cache, action) {
                return Err(AccessError::Denied(format!(
                    "registry {reg_name:?} is an image cache of {cache:?}: nothing can be pushed (or signed) into it; \
                     its images arrive by pulling them"
                ))
                .into());
            }
        }
        Need::Role { action, registry: reg_name } => {
            let user = user_of(app, grants).await?;
            if !user.may(*action, reg_name.as_deref()) {
                let scope = reg_name.as_deref().map_or(String::new(), |r| format!(" in registry {r:?}"));
                return Err(AccessError::Denied(format!(
                    "{} ({}) may not {}{scope}",
                    user.name,
                    user.role.as_str(),
                    action.describe()
                ))
                .into());
            }
            // A registry's network policy guards its images; its settings stay manageable, so
            // an administrator cannot lock everyone out.
            let guards_data = !matches!(action, Action::ViewRegistries | Action::ManageRegistries);
            if let Some(reg_name) = reg_name.as_ref().filter(|_| guards_data) {
                if let Some(reg) = registry_of(app, reg_name).await? {
                    if !reg.admits(source) {
                        return Err(AccessError::Denied(format!(
                            "registry {reg_name:?} does not allow public access from this network"
                        ))
                        .into());
                    }
                }
            }
        }
        Need::Admin => {
            let user = user_of(app, grants).await?;
            if !is_admin(&user) {
                return Err(AccessError::Denied(format!(
                    "{} ({}) is not an administrator of every registry",
                    user.name,
                    user.role.as_str()
                ))
                .into());
            }
        }
        Need::SelfOrAdmin { user: subject } => {
            let user = user_of(app, grants).await?;
            if &user.name != subject && !is_admin(&user) {
                return Err(AccessError::Denied(format!("{} may not manage user {subject:?}", user.name)).into());
            }
        }
    }
    Ok(())
}

/// Whether the caller may read `repository` (pull it): its registry exists and admits the
/// caller's address, and the grants allow a pull. A cross-repository mount and the catalog use
/// this, so neither shows what the caller could not pull itself.
pub async fn may_read(
    app: &App,
    grants: &Grants,
    source: Option<std::net::IpAddr>,
    repository: &str,
) -> Result<bool, AccessError> {
    if !grants.allows(repository, RepoAction::Pull) {
        return Ok(false);
    }
    admits(app, registry::of_repository(repository), source).await
}

/// Whether registry `name` exists and admits requests from `source`.
pub async fn admits(app: &App, name: &str, source: Option<std::net::IpAddr>) -> Result<bool, AccessError> {
    Ok(registry_of(app, name).await?.is_some_and(|reg| reg.admits(source)))
}

fn insufficient(app: &App, head: &http::request::Parts, need: &Need, grants: &Grants, what: &str) -> Refusal {
    let refused = match need {
        Need::Repo { repository, action } => grants.refused(repository, *action),
        _ => {
            matches!(grants, Grants::User(_))
                || matches!(grants, Grants::Token(c) if c.refused.iter().any(|a| a.kind == "registry"))
        }
    };
    if refused {
        Refusal {
            error: AccessError::Denied(format!("{} may not {what}", grants.principal())),
            challenge: None,
            who: None,
        }
    } else {
        // RFC 6750 §3.1: a valid token without the scope gets 403 and a challenge naming the
        // scope; clients such as oras fetch a fresh token on it and retry.
        Refusal {
            error: AccessError::InsufficientScope(what.to_string()),
            challenge: Some(challenge(app, head, need, Some("insufficient_scope"))),
            who: None,
        }
    }
}
