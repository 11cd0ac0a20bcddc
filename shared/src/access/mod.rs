//! Who is asking and whether they may: credentials (Basic access keys or Bearer tokens) become
//! [`Grants`], every route states what it needs ([`Need`]), and [`guard::authorize`] decides once,
//! at the edge, before any handler runs. The token endpoint (`/auth/token`) lives here too.

pub mod client_ip;
pub mod grants;
pub mod guard;
pub mod login;
pub mod scope;
pub mod signing;
pub mod token_service;

pub use crate::state::{limiter, AccessState};
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
