//! The first administrator: an operator-supplied key (`BERTH_ADMIN_ACCESS_KEY` and
//! `BERTH_ADMIN_SECRET_KEY`) made sure of at every start, or, on a registry with no users at all,
//! a generated key that is returned once for printing.

use super::{key, user, IdentityError, Role};
use crate::metadata::MetadataStore;
use crate::metadata::UnixTime;

/// The user the bootstrap key belongs to.
pub const ADMIN_USER: &str = "admin";

/// A key created here, to show the operator once.
#[derive(Clone, PartialEq, Eq)]
pub struct NewAdminKey {
    /// access key id
    pub access_key: String,
    /// secret key
    pub secret_key: String,
}

impl std::fmt::Debug for NewAdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAdminKey").field("access_key", &self.access_key).finish_non_exhaustive()
    }
}

/// Makes sure an administrator can log in; returns a generated key when one was created.
pub async fn ensure_admin(
    meta: &dyn MetadataStore,
    chosen: Option<(&str, &str)>,
    now: UnixTime,
) -> Result<Option<NewAdminKey>, IdentityError> {
    match chosen {
        Some((id, secret)) => {
            ensure_admin_user(meta, now).await?;
            match key::get(meta, id).await? {
                Some((existing, _)) if existing.user == ADMIN_USER => {
                    if !key::verify(secret.to_string(), existing.secret_hash).await? {
                        key::set_secret(meta, id, secret).await?;
                    }
                }
                Some(_) => {
                    return Err(IdentityError::Invalid(format!(
                        "BERTH_ADMIN_ACCESS_KEY {id:?} belongs to another user"
                    )))
                }
                None => {
                    key::create(meta, ADMIN_USER, Some((id, secret)), now).await?;
                }
            }
            Ok(None)
        }
        None => {
            let (users, _) = user::list(meta, None, 1).await?;
            if !users.is_empty() {
                return Ok(None);
            }
            ensure_admin_user(meta, now).await?;
            if !key::list(meta, ADMIN_USER).await?.is_empty() {
                return Ok(None);
            }
            let (created, secret) = key::create(meta, ADMIN_USER, None, now).await?;
            Ok(Some(NewAdminKey { access_key: created.id, secret_key: secret }))
        }
    }
}

async fn ensure_admin_user(meta: &dyn MetadataStore, now: UnixTime) -> Result<(), IdentityError> {
    match user::create(meta, ADMIN_USER, Role::ProjectAdmin, None, "bootstrap", now).await {
        Ok(_) | Err(IdentityError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}
