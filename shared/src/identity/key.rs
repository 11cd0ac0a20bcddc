//! Access keys: the (access key, secret key) pairs users log in with. Only an argon2id hash of
//! each secret is stored; the secret itself is returned once, at creation or rotation.

use serde::{Deserialize, Serialize};

use super::{user, IdentityError};
use crate::auth::secret;
use crate::metadata::{Collection, Documents, Expect, MetadataError, UnixTime};

/// Access keys by id.
pub const KEYS: Collection<AccessKey> = Collection::new("key");

/// The name of the collection of key use stamps: the only identity records the edge writes.
pub const USE_COLLECTION: &str = "key-use";

/// When each key was last used, by key id.
const KEY_USE: Collection<KeyUse> = Collection::new(USE_COLLECTION);

/// A key's use stamp.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct KeyUse {
    last_used_at: UnixTime,
}

/// The most access keys one user may hold.
pub const MAX_KEYS_PER_USER: usize = 5;

/// An access key as stored (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey {
    /// the public half, sent as the user name of Basic credentials
    pub id: String,
    /// the user it belongs to
    pub user: String,
    /// argon2id PHC string of the secret
    pub secret_hash: String,
    /// when it was created
    pub created_at: UnixTime,
    /// when its secret was last replaced
    #[serde(default)]
    pub rotated_at: Option<UnixTime>,
    /// how many times its secret was replaced: tokens name the generation they were issued
    /// under, so a rotation ends them (a time in seconds could not tell apart tokens minted in
    /// the rotation's second)
    #[serde(default)]
    pub generation: u64,
    /// when it last authenticated a request (updated at most once a minute): kept apart, in
    /// its use stamp, and filled in by [`list`]
    #[serde(default, skip_serializing)]
    pub last_used_at: Option<UnixTime>,
}

/// Hashes on a blocking thread: argon2 is deliberately slow.
async fn hash(secret: String) -> Result<String, IdentityError> {
    tokio::task::spawn_blocking(move || secret::hash_secret(&secret))
        .await
        .map_err(|e| IdentityError::Invalid(format!("hashing task failed: {e}")))?
        .map_err(IdentityError::from)
}

/// Verifies on a blocking thread in `memory` (a login slot's reusable argon2 working memory),
/// which is handed back with the answer.
pub async fn verify_in(
    secret: String,
    phc: String,
    mut memory: Vec<argon2::Block>,
) -> (Result<bool, IdentityError>, Vec<argon2::Block>) {
    let task = tokio::task::spawn_blocking(move || {
        let verdict = secret::verify_secret_in(&secret, &phc, &mut memory);
        (verdict, memory)
    });
    match task.await {
        Ok((verdict, memory)) => (verdict.map_err(IdentityError::from), memory),
        Err(e) => (Err(IdentityError::Invalid(format!("verification task failed: {e}"))), Vec::new()),
    }
}

/// Verifies on a blocking thread.
pub async fn verify(secret: String, phc: String) -> Result<bool, IdentityError> {
    tokio::task::spawn_blocking(move || secret::verify_secret(&secret, &phc))
        .await
        .map_err(|e| IdentityError::Invalid(format!("verification task failed: {e}")))?
        .map_err(IdentityError::from)
}

/// Creates a key for `user_name` (at most [`MAX_KEYS_PER_USER`]); returns it and its secret.
/// `chosen` imports an operator-supplied pair (the bootstrap admin key).
pub async fn create(
    meta: &dyn Documents,
    user_name: &str,
    chosen: Option<(&str, &str)>,
    now: UnixTime,
) -> Result<(AccessKey, String), IdentityError> {
    let (id, secret) = match chosen {
        Some((id, secret)) => {
            validate_chosen(id, secret)?;
            (id.to_string(), secret.to_string())
        }
        None => (secret::new_access_key_id()?, secret::new_secret()?),
    };
    let key = AccessKey {
        id: id.clone(),
        user: user_name.to_string(),
        secret_hash: hash(secret.clone()).await?,
        created_at: now,
        rotated_at: None,
        generation: 0,
        last_used_at: None,
    };
    loop {
        let (mut owner, version) =
            user::get_versioned(meta, user_name).await?.ok_or_else(|| IdentityError::UserUnknown(user_name.into()))?;
        if owner.keys.len() >= MAX_KEYS_PER_USER {
            return Err(IdentityError::TooManyKeys(user_name.to_string()));
        }
        match KEYS.put(meta, &id, &key, Expect::Absent).await {
            Ok(_) => {}
            Err(MetadataError::Conflict(_)) => {
                return Err(IdentityError::AlreadyExists { kind: "access key", name: id });
            }
            Err(e) => return Err(e.into()),
        }
        owner.keys.push(id.clone());
        match user::replace(meta, &owner, version).await {
            Ok(()) => return Ok((key, secret)),
            Err(IdentityError::Metadata(MetadataError::Conflict(_))) => {
                // Someone changed the user meanwhile: undo and re-check the limit.
                KEYS.delete(meta, &id, Expect::Any).await?;
            }
            Err(e) => {
                KEYS.delete(meta, &id, Expect::Any).await?;
                return Err(e);
            }
        }
    }
}

fn validate_chosen(id: &str, secret: &str) -> Result<(), IdentityError> {
    if id.len() < 8
        || id.len() > 128
        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(IdentityError::Invalid(
            "an access key id must be 8-128 letters, digits, '-', '_' or '.'".to_string(),
        ));
    }
    if secret.len() < 16 || secret.len() > 256 {
        return Err(IdentityError::Invalid("a secret key must be 16-256 characters".to_string()));
    }
    Ok(())
}

/// A key by id.
pub async fn get(meta: &dyn Documents, id: &str) -> Result<Option<(AccessKey, u64)>, IdentityError> {
    Ok(KEYS.get(meta, id).await?.map(|v| (v.record, v.version)))
}

/// The keys of a user.
pub async fn list(meta: &dyn Documents, user_name: &str) -> Result<Vec<AccessKey>, IdentityError> {
    let owner = user::get(meta, user_name).await?.ok_or_else(|| IdentityError::UserUnknown(user_name.into()))?;
    let mut keys = Vec::with_capacity(owner.keys.len());
    for id in &owner.keys {
        if let Some((mut key, _)) = get(meta, id).await? {
            key.last_used_at = last_used(meta, id).await?;
            keys.push(key);
        }
    }
    Ok(keys)
}

/// Revokes (deletes) a key of a user; a revoked key obtains no new token.
pub async fn revoke(meta: &dyn Documents, user_name: &str, id: &str) -> Result<(), IdentityError> {
    loop {
        let (mut owner, version) =
            user::get_versioned(meta, user_name).await?.ok_or_else(|| IdentityError::UserUnknown(user_name.into()))?;
        if !owner.keys.iter().any(|k| k == id) {
            return Err(IdentityError::KeyUnknown(id.to_string()));
        }
        KEYS.delete(meta, id, Expect::Any).await?;
        owner.keys.retain(|k| k != id);
        match user::replace(meta, &owner, version).await {
            Err(IdentityError::Metadata(MetadataError::Conflict(_))) => continue,
            other => return other,
        }
    }
}

/// Replaces a key's secret; returns the new secret (shown once).
pub async fn rotate(
    meta: &dyn Documents,
    user_name: &str,
    id: &str,
    now: UnixTime,
) -> Result<(AccessKey, String), IdentityError> {
    let secret = secret::new_secret()?;
    let secret_hash = hash(secret.clone()).await?;
    loop {
        let (mut key, version) = get(meta, id).await?.ok_or_else(|| IdentityError::KeyUnknown(id.to_string()))?;
        if key.user != user_name {
            return Err(IdentityError::KeyUnknown(id.to_string()));
        }
        key.secret_hash = secret_hash.clone();
        key.generation += 1;
        key.rotated_at = Some(now);
        match KEYS.put(meta, id, &key, Expect::Version(version)).await {
            Ok(_) => return Ok((key, secret)),
            Err(MetadataError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Replaces a key's secret with an operator-chosen one (bootstrap admin key whose secret changed).
pub async fn set_secret(meta: &dyn Documents, id: &str, secret: &str) -> Result<(), IdentityError> {
    let secret_hash = hash(secret.to_string()).await?;
    loop {
        let (mut key, version) = get(meta, id).await?.ok_or_else(|| IdentityError::KeyUnknown(id.to_string()))?;
        key.secret_hash = secret_hash.clone();
        // a replaced secret ends the tokens obtained with the old one
        key.generation += 1;
        match KEYS.put(meta, id, &key, Expect::Version(version)).await {
            Ok(_) => return Ok(()),
            Err(MetadataError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Records that key `id` was used, at most once a minute per process (best effort). The stamp
/// is a record of its own, so what writes stamps on every request (each function's edge) never
/// writes a credential record.
/// `stamped` is the process's memory of when it last wrote each stamp.
pub async fn touch(
    meta: &dyn Documents,
    stamped: &std::sync::Mutex<std::collections::HashMap<String, UnixTime>>,
    id: &str,
    now: UnixTime,
) {
    if let Ok(mut stamped) = stamped.lock() {
        if stamped.get(id).is_some_and(|t| now - t < 60) {
            return;
        }
        if stamped.len() >= 10_000 {
            stamped.clear();
        }
        stamped.insert(id.to_string(), now);
    }
    // A failed write only loses a timestamp.
    let _ = KEY_USE.put(meta, id, &KeyUse { last_used_at: now }, Expect::Any).await;
}

/// When a key was last used, if it was.
pub async fn last_used(meta: &dyn Documents, id: &str) -> Result<Option<UnixTime>, IdentityError> {
    Ok(KEY_USE.get(meta, id).await?.map(|v| v.record.last_used_at))
}
