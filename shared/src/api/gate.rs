//! What each route needs from the edge: its access [`Need`], whether it changes credentials, and
//! the upload session a `_state` token may stand in for. `access::guard` decides on this
//! [`Gate`] without knowing routes.

use http::Method;

use super::Route;
use crate::access::guard::Gate;
use crate::access::{Need, RepoAction};
use crate::identity::{registry, Action};

impl Route {
    /// What the edge checks before this route's handler runs, for `method`.
    pub fn gate(&self, method: &Method) -> Gate<'_> {
        let upload_session = match self {
            Route::UploadPatch { name, id }
            | Route::UploadPut { name, id }
            | Route::UploadStatus { name, id }
            | Route::UploadCancel { name, id } => Some((name, id)),
            _ => None,
        };
        Gate { need: self.need(method), upload_session, changes_credentials: changes_credentials(self, method) }
    }

    /// What `route` needs when called with `method`.
    pub fn need(&self, method: &Method) -> Need {
        let route = self;
        let repo = |name: &crate::oci::RepoName, action| Need::Repo { repository: name.to_string(), action };
        let read = if method == Method::HEAD { RepoAction::View } else { RepoAction::Pull };
        match route {
            Route::Token => Need::Public,
            Route::Base => Need::SignedIn,
            Route::Catalog => Need::Catalog,
            Route::TagsList { name } | Route::Referrers { name, .. } => repo(name, RepoAction::View),
            Route::ManifestGet { name, .. } | Route::BlobGet { name, .. } => repo(name, read),
            Route::ManifestPut { name, .. }
            | Route::UploadStart { name }
            | Route::UploadPatch { name, .. }
            | Route::UploadPut { name, .. }
            | Route::UploadStatus { name, .. }
            | Route::UploadCancel { name, .. } => repo(name, RepoAction::Push),
            Route::ManifestDelete { name, .. } | Route::BlobDelete { name, .. } => repo(name, RepoAction::Delete),
            Route::ApiOpenApi => Need::Public,
            Route::ApiRegistries if method == Method::GET => role(Action::ViewRegistries, None),
            Route::ApiRegistries | Route::ApiUsers | Route::ApiAudit => Need::Admin,
            Route::ApiRegistry { registry } if method == Method::GET => role(Action::ViewRegistries, Some(registry)),
            Route::ApiRegistry { registry } => role(Action::ManageRegistries, Some(registry)),
            Route::ApiImages { registry } => role(Action::ViewImages, Some(registry)),
            Route::ApiImage { name } => role(Action::DeleteImages, Some(registry::of_repository(name.as_str()))),
            Route::ApiArtifacts { name } => role(Action::ViewArtifacts, Some(registry::of_repository(name.as_str()))),
            Route::ApiArtifact { name, .. } => {
                let action = if method == Method::GET { Action::ViewArtifacts } else { Action::DeleteArtifacts };
                role(action, Some(registry::of_repository(name.as_str())))
            }
            Route::ApiTags { name } => role(Action::ViewTags, Some(registry::of_repository(name.as_str()))),
            Route::ApiTag { name, .. } => role(Action::ManageTags, Some(registry::of_repository(name.as_str()))),
            Route::ApiCleanupRules { registry } | Route::ApiCleanupSchedule { registry } if method == Method::GET => {
                role(Action::ViewCleanupPolicy, Some(registry))
            }
            Route::ApiCleanupRule { registry, .. } if method == Method::PATCH => {
                role(Action::ToggleCleanupRule, Some(registry))
            }
            Route::ApiCleanupRuns { registry } | Route::ApiCleanupRun { registry, .. } if method == Method::GET => {
                role(Action::ViewCleanupHistory, Some(registry))
            }
            Route::ApiCleanupRules { registry }
            | Route::ApiCleanupRule { registry, .. }
            | Route::ApiCleanupSchedule { registry }
            | Route::ApiCleanupRuns { registry }
            | Route::ApiCleanupRun { registry, .. } => role(Action::ManageCleanupPolicy, Some(registry)),
            Route::ApiProtectionRules { registry } if method == Method::GET => {
                role(Action::ViewProtectionPolicy, Some(registry))
            }
            Route::ApiProtectionRules { registry } | Route::ApiProtectionRule { registry, .. } => {
                role(Action::ManageProtectionPolicy, Some(registry))
            }
            Route::ApiGcRuns | Route::ApiGcRun { .. } => Need::Admin,
            Route::ApiUser { user } if method == Method::GET => Need::SelfOrAdmin { user: user.clone() },
            Route::ApiUser { .. } => Need::Admin,
            Route::ApiKeys { user } | Route::ApiKey { user, .. } | Route::ApiKeyRotate { user, .. } => {
                Need::SelfOrAdmin { user: user.clone() }
            }
        }
    }
}

fn role(action: Action, registry: Option<&str>) -> Need {
    Need::Role { action, registry: registry.map(str::to_string) }
}

/// Routes that create credentials or change what a user may do: a token may call them only while
/// its access key and user are unchanged *now* (not as of the last cached check).
fn changes_credentials(route: &Route, method: &Method) -> bool {
    matches!(
        (route, method),
        (Route::ApiKeys { .. }, &Method::POST)
            | (Route::ApiKeyRotate { .. }, _)
            | (Route::ApiUsers, &Method::POST)
            | (Route::ApiUser { .. }, &Method::PATCH)
    )
}
