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
    /// A stored document could not be decoded.
    #[error("stored {0} record is corrupt: {1}")]
    Corrupt(&'static str, String),
}

/// Decodes a stored document body.
fn decode<T: serde::de::DeserializeOwned>(kind: &'static str, body: serde_json::Value) -> Result<T, IdentityError> {
    serde_json::from_value(body).map_err(|e| IdentityError::Corrupt(kind, e.to_string()))
}

/// Encodes a record as a document body.
fn encode<T: serde::Serialize>(kind: &'static str, value: &T) -> Result<serde_json::Value, IdentityError> {
    serde_json::to_value(value).map_err(|e| IdentityError::Corrupt(kind, e.to_string()))
}
