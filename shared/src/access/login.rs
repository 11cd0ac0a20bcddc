//! Authentication: turning `Authorization` into [`Grants`]. Basic credentials are an access key
//! and its secret (argon2-verified once, then remembered by fingerprint while the stored hash is
//! unchanged); Bearer credentials are tokens from `/auth/token`.

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine;

use super::{AccessError, Grants};
use crate::app::App;
use crate::auth::{jwt, secret};
use crate::identity::{key, AccessKey, User};

/// Clock skew tolerated on a token's `nbf` and `exp`.
pub const TOKEN_LEEWAY_SECS: i64 = 5;
/// How many verified tokens a process remembers.
const MAX_CACHED_TOKENS: usize = 10_000;

/// Credentials found on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// none sent
    None,
    /// access key id and secret
    Basic {
        /// access key id
        id: String,
        /// secret key
        secret: String,
    },
    /// a token
    Bearer(String),
}

/// Reads the `Authorization` header.
pub fn credentials(head: &http::request::Parts) -> Result<Credentials, AccessError> {
    let Some(value) = head.headers.get(http::header::AUTHORIZATION) else { return Ok(Credentials::None) };
    let value = value.to_str().map_err(|_| AccessError::Unauthenticated("Authorization is not ASCII".into()))?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Credentials::Bearer(rest.to_string()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| AccessError::Unauthenticated("Basic credentials are not base64 of key:secret".into()))?;
        let (id, secret) = decoded
            .split_once(':')
            .ok_or_else(|| AccessError::Unauthenticated("Basic credentials are not key:secret".into()))?;
        return Ok(Credentials::Basic { id: id.to_string(), secret: secret.to_string() });
    }
    Err(AccessError::Unauthenticated(format!("unsupported authorization scheme {scheme:?}")))
}

/// Checks an access key and secret, rate limiting failures per key and per address.
pub async fn verify_key(
    app: &App,
    id: &str,
    secret_key: &str,
    source: Option<IpAddr>,
) -> Result<(User, AccessKey), AccessError> {
    let mut subjects = vec![format!("key:{id}")];
    if let Some(ip) = source {
        subjects.push(format!("ip:{ip}"));
    }
    if let Some(retry_after) = app.access.limiter.blocked(&subjects) {
        return Err(AccessError::RateLimited { retry_after });
    }
    let fail = || {
        app.access.limiter.failed(&subjects);
        tracing::info!(access_key = %id, source = ?source, "failed login");
        AccessError::Unauthenticated("invalid access key or secret key".into())
    };
    if id.is_empty() || id.len() > 128 || secret_key.len() > 256 {
        return Err(fail());
    }
    let Some((stored, version)) = key::get(app.meta.as_ref(), id).await? else { return Err(fail()) };
    let fingerprint = secret::fingerprint(secret_key);
    let cached = app
        .access
        .verified
        .lock()
        .ok()
        .and_then(|m| m.get(id).cloned())
        .is_some_and(|(fp, hash)| fp == fingerprint && hash == stored.secret_hash);
    if !cached {
        if !key::verify(secret_key.to_string(), stored.secret_hash.clone()).await? {
            return Err(fail());
        }
        if let Ok(mut m) = app.access.verified.lock() {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(id.to_string(), (fingerprint, stored.secret_hash.clone()));
        }
    }
    let Some(user) = crate::identity::user::get(app.meta.as_ref(), &stored.user).await? else { return Err(fail()) };
    key::touch(app.meta.as_ref(), &stored, version, app.clock.now()).await;
    Ok((user, stored))
}

/// The grants of a request, or `None` when it carries no credentials.
pub async fn authenticate(
    app: &App,
    head: &http::request::Parts,
    source: Option<IpAddr>,
) -> Result<Option<Grants>, AccessError> {
    match credentials(head)? {
        Credentials::None => Ok(None),
        Credentials::Basic { id, secret } => {
            let (user, _) = verify_key(app, &id, &secret, source).await?;
            Ok(Some(Grants::User(Arc::new(user))))
        }
        Credentials::Bearer(token) => {
            let now = app.clock.now();
            // A token verified before is immutable: only its time window needs checking again.
            let cached = app.access.tokens.lock().ok().and_then(|m| m.get(&token).cloned());
            if let Some(claims) = cached {
                if claims.nbf - TOKEN_LEEWAY_SECS <= now && now < claims.exp + TOKEN_LEEWAY_SECS {
                    return Ok(Some(Grants::Token(claims)));
                }
            }
            let signing = super::signing::key(app).await?;
            let claims = jwt::verify(
                &signing.verifying_key(),
                &token,
                &app.settings.token_issuer,
                &app.settings.token_service,
                now,
                TOKEN_LEEWAY_SECS,
            )
            .map_err(|e| AccessError::Unauthenticated(format!("token refused: {e}")))?;
            let claims = Arc::new(claims);
            if let Ok(mut m) = app.access.tokens.lock() {
                if m.len() >= MAX_CACHED_TOKENS {
                    m.retain(|_, c| c.exp + TOKEN_LEEWAY_SECS > now);
                    if m.len() >= MAX_CACHED_TOKENS {
                        m.clear();
                    }
                }
                m.insert(token, claims.clone());
            }
            Ok(Some(Grants::Token(claims)))
        }
    }
}
