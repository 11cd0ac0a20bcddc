//! Authentication: turning `Authorization` into [`Grants`]. Basic credentials are an access key
//! and its secret (argon2-verified once, then remembered by fingerprint while the stored hash is
//! unchanged); Bearer credentials are tokens from `/auth/token`.

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

/// Credentials found on a request (its `Debug` leaves the secret and the token out).
#[derive(Clone, PartialEq, Eq)]
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

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Basic { id, .. } => f.debug_struct("Basic").field("id", id).finish_non_exhaustive(),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
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

/// How a key id appears in logs and audit entries: at most 64 characters, control characters
/// and quotes escaped, so a crafted id cannot forge log lines or flood the log.
pub fn loggable(id: &str) -> String {
    let mut out: String = id.chars().take(64).flat_map(char::escape_debug).collect();
    if id.chars().count() > 64 {
        out.push_str(&format!("…({} bytes)", id.len()));
    }
    out
}

/// The argon2 hash an unknown access key is checked against, so a guess at a key id that does
/// not exist costs what a guess at the secret of one that does costs (no timing oracle).
static UNKNOWN_KEY_HASH: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

async fn unknown_key_hash() -> Result<String, AccessError> {
    UNKNOWN_KEY_HASH
        .get_or_try_init(|| async {
            let random = secret::new_secret().map_err(crate::identity::IdentityError::from)?;
            tokio::task::spawn_blocking(move || secret::hash_secret(&random))
                .await
                .map_err(|e| AccessError::Invalid(format!("hashing task failed: {e}")))?
                .map_err(|e| AccessError::Identity(e.into()))
        })
        .await
        .cloned()
}

/// Checks an access key and secret. Attempts are counted per key and per address before the
/// secret is verified (see [`super::limiter`]); identical attempts running at once share one
/// verification; a secret already verified against the stored hash is not verified again.
pub async fn verify_key(
    app: &App,
    id: &str,
    secret_key: &str,
    head: &http::request::Parts,
) -> Result<(User, AccessKey), AccessError> {
    let source = super::client_ip::of(head);
    let limiter = &app.access.limiter;
    let mut subjects = Vec::with_capacity(2);
    if let Some(ip) = source {
        subjects.push(format!("ip:{ip}"));
    }
    let fail = || async {
        tracing::info!(access_key = %loggable(id), source = ?source, "failed login");
        crate::audit::Context::of(head)
            .record_refusal(app, &loggable(id), "login", http::StatusCode::UNAUTHORIZED)
            .await;
        AccessError::Unauthenticated("invalid access key or secret key".into())
    };
    if id.is_empty() || id.len() > 128 || secret_key.len() > 256 {
        // no key has such an id or secret: counted against the address only
        return match limiter.begin(&subjects) {
            Ok(()) => Err(fail().await),
            Err(retry_after) => Err(AccessError::RateLimited { retry_after }),
        };
    }
    subjects.push(format!("key:{id}"));
    let found = key::get(app.meta.as_ref(), id).await?;
    let fingerprint = secret::fingerprint(secret_key);
    let cached = found.as_ref().is_some_and(|(stored, _)| {
        app.access
            .verified
            .lock()
            .ok()
            .and_then(|m| m.get(id).cloned())
            .is_some_and(|(fp, hash)| fp == fingerprint && hash == stored.secret_hash)
    });
    // A secret this process already verified against the stored hash passes even while its key
    // or address is over the failure limit.
    if !cached {
        let (ip_subjects, key_subject) = subjects.split_at(subjects.len() - 1);
        if let Some(retry_after) = limiter.blocked(ip_subjects) {
            return Err(AccessError::RateLimited { retry_after });
        }
        // A key over its failure limit still lets its right secret in (guessing stays limited
        // per address, and a secret is 240 random bits): whoever guesses at a key id cannot lock
        // out those who hold its secret. Wrong guesses at it answer 429, as before any check.
        let key_blocked = limiter.blocked(key_subject);
        let counted: &[String] = if key_blocked.is_some() { ip_subjects } else { &subjects };
        let hash = match &found {
            Some((stored, _)) => stored.secret_hash.clone(),
            None => unknown_key_hash().await?,
        };
        let flight = format!("{id}\n{fingerprint}");
        let cell = match app.access.verifying.lock() {
            Ok(mut m) => m.entry(flight.clone()).or_default().clone(),
            Err(_) => Arc::default(),
        };
        let led = std::sync::atomic::AtomicBool::new(false);
        let verdict = cell
            .get_or_try_init(|| async {
                led.store(true, std::sync::atomic::Ordering::Relaxed);
                if let Err(retry_after) = limiter.begin(counted) {
                    return Err(AccessError::RateLimited { retry_after });
                }
                let Some(mut slot) = limiter.verification_slot().await else {
                    return Err(AccessError::RateLimited { retry_after: 1 });
                };
                let (verdict, memory) =
                    key::verify_in(secret_key.to_string(), hash, std::mem::take(&mut slot.memory)).await;
                slot.memory = memory;
                let ok = verdict? && found.is_some();
                if ok {
                    limiter.succeeded(counted);
                }
                Ok(ok)
            })
            .await
            .copied();
        if let Ok(mut m) = app.access.verifying.lock() {
            if m.get(&flight).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                m.remove(&flight);
            }
        }
        if !verdict? {
            // an attempt that shared another's verification still counts as a failure
            if !led.load(std::sync::atomic::Ordering::Relaxed) {
                if let Err(retry_after) = limiter.begin(counted) {
                    return Err(AccessError::RateLimited { retry_after });
                }
            }
            let failed = fail().await;
            return Err(key_blocked.map_or(failed, |retry_after| AccessError::RateLimited { retry_after }));
        }
    }
    let Some((stored, _)) = found else { return Err(fail().await) };
    if !cached {
        if let Ok(mut m) = app.access.verified.lock() {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(id.to_string(), (fingerprint, stored.secret_hash.clone()));
        }
    }
    // a key counts only while its user lists it: a key record alone (written by anything that
    // may write key records) grants nothing
    let Some(user) = crate::identity::user::get(app.meta.as_ref(), &stored.user).await? else {
        return Err(fail().await);
    };
    if !user.keys.iter().any(|k| k == &stored.id) {
        return Err(fail().await);
    }
    key::touch(app.meta.as_ref(), &app.access.key_use, &stored.id, app.clock.now()).await;
    Ok((user, stored))
}

/// Whether the user and access key behind a token still stand as they did when it was issued:
/// the user exists with the same role generation, and the key exists, is theirs and has the
/// same secret generation (was not rotated since). Remembered per process for `settings.credential_recheck` (so a change made
/// elsewhere applies within that bound; a change made here applies at once); `fresh` reads
/// the store regardless (before a token creates credentials).
pub async fn token_holder_is_current(app: &App, claims: &jwt::Claims, fresh: bool) -> Result<bool, AccessError> {
    let cache_key =
        format!("{}\n{}\n{}\n{}", claims.sub, claims.access_key_id.as_deref().unwrap_or(""), claims.gen, claims.kgen);
    if !fresh {
        let hit = app.access.holders.lock().ok().and_then(|m| m.get(&cache_key).copied());
        if let Some((current, at)) = hit {
            if at.elapsed() < app.settings.credential_recheck {
                return Ok(current);
            }
        }
    }
    let current = match crate::identity::user::get(app.meta.as_ref(), &claims.sub).await? {
        Some(user) if user.generation == claims.gen => match &claims.access_key_id {
            Some(id) if user.keys.iter().any(|k| k == id) => key::get(app.meta.as_ref(), id)
                .await?
                .is_some_and(|(k, _)| k.user == claims.sub && k.generation == claims.kgen),
            Some(_) => false,
            // every token Berth issues names its key; one without cannot be checked
            None => false,
        },
        _ => false,
    };
    if let Ok(mut m) = app.access.holders.lock() {
        if m.len() >= MAX_CACHED_TOKENS {
            m.clear();
        }
        m.insert(cache_key, (current, std::time::Instant::now()));
    }
    Ok(current)
}

/// The grants of a request, or `None` when it carries no credentials.
pub async fn authenticate(app: &App, head: &http::request::Parts) -> Result<Option<Grants>, AccessError> {
    match credentials(head)? {
        Credentials::None => Ok(None),
        Credentials::Basic { id, secret } => {
            let (user, _) = verify_key(app, &id, &secret, head).await?;
            Ok(Some(Grants::User(Arc::new(user))))
        }
        Credentials::Bearer(token) => {
            let claims = verified_claims(app, token).await?;
            if !token_holder_is_current(app, &claims, false).await? {
                return Err(AccessError::Unauthenticated(
                    "token refused: its user, role or access key changed since it was issued; fetch a new token".into(),
                ));
            }
            Ok(Some(Grants::Token(claims)))
        }
    }
}

/// A token's claims once its signature, issuer, audience, time window and lifetime check.
async fn verified_claims(app: &App, token: String) -> Result<Arc<jwt::Claims>, AccessError> {
    let now = app.clock.now();
    // A token verified before is immutable: only its time window needs checking again.
    let cached = app.access.tokens.lock().ok().and_then(|m| m.get(&token).cloned());
    if let Some(claims) = cached {
        if claims.nbf - TOKEN_LEEWAY_SECS <= now && now < claims.exp + TOKEN_LEEWAY_SECS {
            return Ok(claims);
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
    // Berth never issues a token longer-lived than the configured lifetime: one that claims more
    // was not issued under this configuration (or was forged with a leaked key)
    let longest = app.settings.token_lifetime.min(super::token_service::MAX_TOKEN_LIFETIME).as_secs() as i64;
    // (and one issued in the future would outlive any rotation of the key it names)
    if claims.exp - claims.iat > longest + TOKEN_LEEWAY_SECS
        || claims.exp > now + longest + TOKEN_LEEWAY_SECS
        || claims.iat > now + TOKEN_LEEWAY_SECS
    {
        return Err(AccessError::Unauthenticated(format!(
            "token refused: it is valid for longer than this registry issues tokens ({longest} s)"
        )));
    }
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
    Ok(claims)
}
