//! Who is asking and whether they may: credentials (Basic access keys or Bearer tokens) become
//! [`Grants`], every route states what it needs ([`Need`]), and [`guard::authorize`] decides once,
//! at the edge, before any handler runs. The token endpoint (`/auth/token`) lives here too.

pub mod client_ip;
pub mod grants;
pub mod guard;
pub mod limiter;
pub mod login;
pub mod scope;
pub mod signing;
pub mod token_service;

use std::sync::Arc;

pub use client_ip::ClientIp;
pub use grants::{Grants, RepoAction};
pub use guard::Need;

use crate::identity::IdentityError;
use crate::metadata::MetadataError;

/// Why a request was not let through.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// No usable credentials: answered 401 with a challenge.
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials whose token lacks the scope; the client should fetch a token for it.
    #[error("the token does not grant {0}")]
    InsufficientScope(String),
    /// The principal may not do this.
    #[error("{0}")]
    Denied(String),
    /// Too many failed logins from this key or address.
    #[error("too many failed logins; retry after {retry_after} seconds")]
    RateLimited {
        /// seconds until logins are accepted again
        retry_after: u64,
    },
    /// The registry of the repository does not exist.
    #[error("registry {0:?} does not exist")]
    RegistryUnknown(String),
    /// The request is malformed (bad scope, bad form).
    #[error("{0}")]
    Invalid(String),
    /// The token signing key could not be loaded or created.
    #[error("token signing key: {0}")]
    SigningKey(String),
    /// An identity lookup failed.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The metadata store failed.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

/// The challenge to send with a 401: the realm, service and scope a client should ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// absolute URL of the token endpoint
    pub realm: String,
    /// the `service` parameter (the token audience)
    pub service: String,
    /// the scope that would let the request through, if any
    pub scope: Option<String>,
    /// `insufficient_scope` when a token was sent but does not cover the request
    pub error: Option<&'static str>,
}

impl Challenge {
    /// The `WWW-Authenticate` header value.
    pub fn header_value(&self) -> String {
        let mut v = format!("Bearer realm=\"{}\",service=\"{}\"", self.realm, self.service);
        if let Some(scope) = &self.scope {
            v.push_str(&format!(",scope=\"{scope}\""));
        }
        if let Some(error) = self.error {
            v.push_str(&format!(",error=\"{error}\""));
        }
        v
    }
}

/// Process-wide access state: the signing key once loaded, the verified-secret cache, the
/// login limiter and a short cache of registry settings.
#[derive(Default)]
pub struct AccessState {
    /// the token signing key, loaded (or created) on first use
    pub signing: tokio::sync::OnceCell<Arc<crate::auth::jwt::SigningKey>>,
    /// access key id → (secret fingerprint, secret hash) already verified with argon2
    pub verified: std::sync::Mutex<std::collections::HashMap<String, (String, String)>>,
    /// tokens already verified → their claims (the time window is still checked on every use)
    pub tokens: std::sync::Mutex<std::collections::HashMap<String, Arc<crate::auth::jwt::Claims>>>,
    /// (user, key, generation) of tokens → whether they were current when last checked, and when
    pub holders: std::sync::Mutex<std::collections::HashMap<String, (bool, std::time::Instant)>>,
    /// secret verifications running now, by key id and secret fingerprint, so identical
    /// concurrent attempts share one
    pub verifying: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::OnceCell<bool>>>>,
    /// login attempt counters and verification slots
    pub limiter: limiter::LoginLimiter,
    /// how many refusals each principal and address had written to the audit log lately
    pub refusals: crate::audit::RefusalBudget,
    /// registry name → (record, when read)
    pub registries: guard::RegistryCache,
}

impl AccessState {
    /// Forgets what is known about token holders, after a change here to a user or key.
    pub fn forget_holders(&self) {
        if let Ok(mut m) = self.holders.lock() {
            m.clear();
        }
    }
}

impl std::fmt::Debug for AccessState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessState")
    }
}
