//! Who may do what: registries (the first segment of every image name), users with their role,
//! and the access keys they log in with. All kept as documents in the `MetadataStore`.

pub mod bootstrap;
pub mod key;
pub mod registry;
pub mod role;
pub mod user;

pub use key::AccessKey;
pub use registry::Registry;
pub use role::{Action, Role};
pub use user::User;

use crate::metadata::MetadataError;

/// Why an identity operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The named registry does not exist.
    #[error("registry {0:?} does not exist")]
    RegistryUnknown(String),
    /// The named user does not exist.
    #[error("user {0:?} does not exist")]
    UserUnknown(String),
    /// The access key does not exist (or belongs to another user).
    #[error("access key {0:?} does not exist")]
    KeyUnknown(String),
    /// Something of that name exists already.
    #[error("{kind} {name:?} already exists")]
    AlreadyExists {
        /// registry, user
        kind: &'static str,
        /// its name
        name: String,
    },
    /// A name or field is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The user holds the most access keys allowed.
    #[error("user {0:?} already has {max} access keys", max = key::MAX_KEYS_PER_USER)]
    TooManyKeys(String),
    /// Hashing or randomness failed.
    #[error("credential processing failed: {0}")]
    Secret(#[from] crate::auth::secret::SecretError),
    /// The metadata store failed.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}
