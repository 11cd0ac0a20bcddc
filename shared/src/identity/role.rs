//! The NCR permission families and the 21 actions of the guide's "Service Permission" table:
//! the single source of what each role may do, in the registry API and the management API alike.

use serde::{Deserialize, Serialize};

/// A user's permission family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// everything (NCR Project Admin)
    ProjectAdmin,
    /// everything (NCR Project Member)
    ProjectMember,
    /// everything (NCR Service Admin)
    ServiceAdmin,
    /// read and pull
    ServiceViewer,
    /// read and push, never pull
    ImageUploader,
}

/// Every action of the NCR permission table, in the guide's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// View registries
    ViewRegistries,
    /// Create/Delete registries
    ManageRegistries,
    /// View a registry replication list
    ViewReplications,
    /// Create/Modify/Delete/Run registry replications
    ManageReplications,
    /// View a registry replication history
    ViewReplicationHistory,
    /// View images
    ViewImages,
    /// Pull images
    PullImages,
    /// Push images
    PushImages,
    /// Delete images
    DeleteImages,
    /// View artifacts
    ViewArtifacts,
    /// Delete artifacts
    DeleteArtifacts,
    /// View artifact tags
    ViewTags,
    /// Create/Delete artifact tags
    ManageTags,
    /// View webhook
    ViewWebhooks,
    /// Create/Modify/Delete webhooks
    ManageWebhooks,
    /// View image cleanup policy
    ViewCleanupPolicy,
    /// View image cleanup history
    ViewCleanupHistory,
    /// Create/Delete/Run image cleanup policy
    ManageCleanupPolicy,
    /// Enable/Disable image cleanup rule
    ToggleCleanupRule,
    /// View image protection policy
    ViewProtectionPolicy,
    /// Add/Delete image protection policy
    ManageProtectionPolicy,
}

impl Action {
    /// All 21 actions, in the guide's table order.
    pub const ALL: [Action; 21] = [
        Action::ViewRegistries,
        Action::ManageRegistries,
        Action::ViewReplications,
        Action::ManageReplications,
        Action::ViewReplicationHistory,
        Action::ViewImages,
        Action::PullImages,
        Action::PushImages,
        Action::DeleteImages,
        Action::ViewArtifacts,
        Action::DeleteArtifacts,
        Action::ViewTags,
        Action::ManageTags,
        Action::ViewWebhooks,
        Action::ManageWebhooks,
        Action::ViewCleanupPolicy,
        Action::ViewCleanupHistory,
        Action::ManageCleanupPolicy,
        Action::ToggleCleanupRule,
        Action::ViewProtectionPolicy,
        Action::ManageProtectionPolicy,
    ];

    /// The action as the guide's table words it, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Action::ViewRegistries => "view registries",
            Action::ManageRegistries => "create or delete registries",
            Action::ViewReplications => "view replications",
            Action::ManageReplications => "create, modify, delete or run replications",
            Action::ViewReplicationHistory => "view replication history",
            Action::ViewImages => "view images",
            Action::PullImages => "pull images",
            Action::PushImages => "push images",
            Action::DeleteImages => "delete images",
            Action::ViewArtifacts => "view artifacts",
            Action::DeleteArtifacts => "delete artifacts",
            Action::ViewTags => "view artifact tags",
            Action::ManageTags => "create or delete artifact tags",
            Action::ViewWebhooks => "view webhooks",
            Action::ManageWebhooks => "create, modify or delete webhooks",
            Action::ViewCleanupPolicy => "view the image cleanup policy",
            Action::ViewCleanupHistory => "view the image cleanup history",
            Action::ManageCleanupPolicy => "create, delete or run the image cleanup policy",
            Action::ToggleCleanupRule => "enable or disable image cleanup rules",
            Action::ViewProtectionPolicy => "view the image protection policy",
            Action::ManageProtectionPolicy => "add or delete image protection policies",
        }
    }

    /// Whether the action only reads.
    pub fn is_view(self) -> bool {
        matches!(
            self,
            Action::ViewRegistries
                | Action::ViewReplications
                | Action::ViewReplicationHistory
                | Action::ViewImages
                | Action::ViewArtifacts
                | Action::ViewTags
                | Action::ViewWebhooks
                | Action::ViewCleanupPolicy
                | Action::ViewCleanupHistory
                | Action::ViewProtectionPolicy
        )
    }
}

impl Role {
    /// Every role, for listings and the permission matrix tests.
    pub const ALL: [Role; 5] =
        [Role::ProjectAdmin, Role::ProjectMember, Role::ServiceAdmin, Role::ServiceViewer, Role::ImageUploader];

    /// The guide's table: which actions this role holds.
    pub fn allows(self, action: Action) -> bool {
        match self {
            Role::ProjectAdmin | Role::ProjectMember | Role::ServiceAdmin => true,
            Role::ServiceViewer => action.is_view() || action == Action::PullImages,
            Role::ImageUploader => action.is_view() || action == Action::PushImages,
        }
    }

    /// The CLI and API spelling (`service-viewer`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ProjectAdmin => "project-admin",
            Role::ProjectMember => "project-member",
            Role::ServiceAdmin => "service-admin",
            Role::ServiceViewer => "service-viewer",
            Role::ImageUploader => "image-uploader",
        }
    }

    /// Parses the CLI and API spelling.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guide_table() {
        let viewer: Vec<Action> = Action::ALL.into_iter().filter(|a| Role::ServiceViewer.allows(*a)).collect();
        let uploader: Vec<Action> = Action::ALL.into_iter().filter(|a| Role::ImageUploader.allows(*a)).collect();
        assert_eq!(viewer.len(), 11);
        assert_eq!(uploader.len(), 11);
        assert!(viewer.contains(&Action::PullImages) && !viewer.contains(&Action::PushImages));
        assert!(uploader.contains(&Action::PushImages) && !uploader.contains(&Action::PullImages));
        for a in Action::ALL {
            assert!(Role::ProjectAdmin.allows(a) && Role::ProjectMember.allows(a) && Role::ServiceAdmin.allows(a));
            assert!(!Role::ServiceViewer.allows(a) || a.is_view() || a == Action::PullImages);
        }
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
    }
}
