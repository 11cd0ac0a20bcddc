//! Settings from the environment: one error type naming the variable at fault, helpers that read
//! variables, and the [`Secret`] wrapper for key material.

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

/// The SDK configuration loader Berth starts from: the standard providers (environment, the
/// Lambda role, profiles) over rustls with ring, the crypto library reqwest already brings, rather
/// than the SDK default's aws-lc: a function links one crypto library, not two.
pub fn sdk_defaults() -> aws_config::ConfigLoader {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    let https = aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(https)
}
