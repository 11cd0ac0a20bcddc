//! Connecting to a cache's source: the credentials in the source kind's form (an ECR IAM key is
//! exchanged for a registry password with `GetAuthorizationToken`, a Quay JSON form is unpacked),
//! then [`crate::remote`]'s client with pull-only token scopes.

use std::time::Duration;

use base64::Engine;

use super::source::{SourceKind, StoredCache};
use super::CacheError;
use crate::app::App;
use crate::remote::{Endpoint, Remote, RemoteError};

/// The region of an ECR registry host (`<12 digits>.dkr.ecr.<region>.amazonaws.com[.cn]`).
pub fn ecr_region(host: &str) -> Option<String> {
    let rest = host.strip_suffix(".amazonaws.com").or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let mut parts = rest.split('.');
    let account = parts.next()?;
    let (dkr, ecr, region) = (parts.next()?, parts.next()?, parts.next()?);
    let region_ok =
        !region.is_empty() && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    (account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && dkr == "dkr"
        && ecr == "ecr"
        && region_ok
        && parts.next().is_none())
    .then(|| region.to_string())
}

/// Where `cache`'s source is and how to sign in to it, pull only.
pub async fn endpoint(app: &App, cache: &StoredCache) -> Result<Endpoint, CacheError> {
    let secret = cache.secret(app).await?;
    let (username, password) = match (cache.kind, cache.access_id.clone(), secret) {
        (_, None, _) | (_, _, None) => (None, None),
        (SourceKind::Quay, Some(_), Some(json)) => {
            let (account, password) = super::source::quay_login(&json)?;
            (Some(account), Some(password))
        }
        (SourceKind::Ecr, Some(key_id), Some(secret)) => {
            let password = ecr_password(app, cache, &key_id, &secret).await?;
            (Some("AWS".to_string()), Some(password))
        }
        (_, Some(id), Some(secret)) => (Some(id), Some(secret)),
    };
    Ok(Endpoint {
        url: cache.endpoint.clone(),
        username,
        password,
        skip_tls_verify: cache.skip_tls_verify,
        actions: "pull",
        // a token realm or a blob redirect on another port is refused as the source's URL would be
        ports: app.settings.cache.source_ports.clone(),
        // a blob read lasts at most one caching's budget, not one request's timeout
        transfer_timeout: Some(app.settings.cache.budget),
    })
}

/// A connection to `cache`'s source.
pub async fn connect<'a>(app: &'a App, cache: &StoredCache) -> Result<Remote<'a>, CacheError> {
    let endpoint = endpoint(app, cache).await?;
    // keyed by the definition's version: a changed URL or secret never reuses the old sign-in
    let shared = app.upstream.session::<crate::remote::SharedSession>(&format!("{}@{}", cache.name, cache.updated_at));
    Ok(Remote::connect_shared(app, endpoint, app.settings.cache.request_timeout, shared).await?)
}

/// The registry password ECR gives for an IAM key (valid 12 hours), kept per process until an
/// hour before it expires.
async fn ecr_password(app: &App, cache: &StoredCache, key_id: &str, secret: &str) -> Result<String, CacheError> {
    let key = format!("{}@{}", cache.name, cache.updated_at);
    if let Some(password) = app.upstream.ecr_password(&key) {
        return Ok(password);
    }
    let host =
        reqwest::Url::parse(&cache.endpoint).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_default();
    let region =
        ecr_region(&host).ok_or_else(|| RemoteError::Protocol(format!("{host} is not an ECR registry host")))?;
    let mut loader = crate::config::sdk_defaults()
        .region(aws_sdk_ecr::config::Region::new(region))
        .credentials_provider(aws_sdk_ecr::config::Credentials::new(key_id, secret, None, None, "berth-image-cache"));
    if let Some(url) = &app.settings.cache.ecr_endpoint {
        loader = loader.endpoint_url(url);
    }
    let sdk = loader.load().await;
    let answer = aws_sdk_ecr::Client::new(&sdk).get_authorization_token().send().await.map_err(|e| {
        // AWS's text names the IAM user and account: the operator's log gets it, a puller does not
        tracing::warn!(error = %aws_sdk_ecr::error::DisplayErrorContext(e), "ECR GetAuthorizationToken failed");
        RemoteError::Auth("ECR GetAuthorizationToken failed (the access key was refused; see the server log)".into())
    })?;
    let data = answer
        .authorization_data()
        .first()
        .and_then(|d| d.authorization_token())
        .ok_or_else(|| RemoteError::Auth("ECR GetAuthorizationToken answered without a token".into()))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(data)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| RemoteError::Auth("ECR's authorization token is not base64 text".into()))?;
    let (_, password) = decoded
        .split_once(':')
        .ok_or_else(|| RemoteError::Auth("ECR's authorization token is not user:password".into()))?;
    app.upstream.keep_ecr_password(&key, password.to_string(), Duration::from_secs(11 * 3600));
    Ok(password.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecr_hosts() {
        assert_eq!(ecr_region("123456789012.dkr.ecr.ap-northeast-2.amazonaws.com").as_deref(), Some("ap-northeast-2"));
        assert_eq!(ecr_region("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn").as_deref(), Some("cn-north-1"));
        assert_eq!(ecr_region("12345.dkr.ecr.us-east-1.amazonaws.com"), None);
        assert_eq!(ecr_region("123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.net"), None);
        assert_eq!(ecr_region("123456789012.dkr.ecr.us-east-1.x.amazonaws.com"), None);
        assert_eq!(ecr_region("registry.example.net"), None);
    }
}
