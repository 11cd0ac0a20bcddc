//! Settings from the environment: one error type naming the variable at fault, and the registry
//! tunables every backend shares (`BERTH_*`).

use std::time::Duration;

use crate::app::Settings;
use crate::upload_token::UploadTokens;

/// A setting that is missing or unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("environment variable {0} must be set")]
    Missing(&'static str),
    /// A variable is set to something unusable.
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid {
        /// the variable
        name: &'static str,
        /// what is wrong
        reason: String,
    },
}

/// A secret setting (a signing seed, an HMAC key): kept as text but never printed, so a
/// `{:?}` of the settings in a log or a panic message shows no key material.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A non-empty environment variable.
pub fn var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A required non-empty environment variable.
pub fn required(name: &'static str) -> Result<String, ConfigError> {
    var(name).ok_or(ConfigError::Missing(name))
}

/// An optional environment variable parsed as `T`.
pub fn parsed<T: std::str::FromStr>(name: &'static str) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    var(name).map(|v| v.parse::<T>().map_err(|e| ConfigError::Invalid { name, reason: e.to_string() })).transpose()
}

/// Registry settings that deployments tune through the environment, over `base`.
pub fn settings_from_env(base: Settings) -> Result<Settings, ConfigError> {
    let mut s = base;
    if let Some(secs) = parsed::<u64>("BERTH_PRESIGN_EXPIRY_SECONDS")? {
        s.blob_redirect_expiry = Duration::from_secs(secs);
    }
    if let Some(secs) = parsed::<u64>("BERTH_UPLOAD_EXPIRY_SECONDS")? {
        s.upload_expiry = Duration::from_secs(secs);
    }
    if let Some(n) = parsed::<u64>("BERTH_CHUNK_MIN_LENGTH")? {
        s.chunk_min_length = n;
    }
    if let Some(url) = var("BERTH_UPLOAD_GATEWAY_URL") {
        s.upload_gateway_url = Some(url);
    }
    if let Some(key) = var("BERTH_UPLOAD_TOKEN_KEY") {
        if key.len() < 32 {
            return Err(ConfigError::Invalid {
                name: "BERTH_UPLOAD_TOKEN_KEY",
                reason: "use at least 32 characters".into(),
            });
        }
        let ttl = Duration::from_secs(parsed::<u64>("BERTH_UPLOAD_TOKEN_TTL_SECONDS")?.unwrap_or(24 * 3600));
        s.upload_tokens = Some(UploadTokens::new(key.into_bytes(), ttl));
    }
    if let Some(secs) = parsed::<u64>("BERTH_TOKEN_LIFETIME_SECONDS")? {
        if secs == 0 || secs > 12 * 3600 {
            return Err(ConfigError::Invalid {
                name: "BERTH_TOKEN_LIFETIME_SECONDS",
                reason: "use 1 to 43200 seconds (12 hours at most)".into(),
            });
        }
        s.token_lifetime = Duration::from_secs(secs);
    }
    if let Some(secs) = parsed::<u64>("BERTH_CREDENTIAL_RECHECK_SECONDS")? {
        if secs > 300 {
            return Err(ConfigError::Invalid {
                name: "BERTH_CREDENTIAL_RECHECK_SECONDS",
                reason: "use 0 to 300 seconds".into(),
            });
        }
        s.credential_recheck = Duration::from_secs(secs);
    }
    if let Some(url) = var("BERTH_PUBLIC_URL") {
        s.public_url = Some(url);
    }
    if let Some(service) = var("BERTH_TOKEN_SERVICE") {
        s.token_service = service;
    }
    if let Some(seed) = var("BERTH_TOKEN_SIGNING_KEY") {
        s.token_signing_key = Some(Secret::new(seed));
    }
    if let Some(secs) = parsed::<u64>("BERTH_GC_GRACE_SECONDS")? {
        s.gc_grace = Duration::from_secs(secs);
    }
    if let Some(cron) = var("BERTH_GC_CRON") {
        s.gc_schedule = match cron.trim() {
            "" | "off" => None,
            expr => {
                crate::policy::cron::Cron::parse(expr)
                    .map_err(|e| ConfigError::Invalid { name: "BERTH_GC_CRON", reason: e.to_string() })?;
                Some(expr.to_string())
            }
        };
    }
    if let Some(secs) = parsed::<u64>("BERTH_JOB_LEASE_SECONDS")? {
        s.job_lease = Duration::from_secs(secs.clamp(1, 43_200));
    }
    Ok(s)
}
