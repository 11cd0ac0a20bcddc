//! A registry's trust settings: whether manifest `GET`s of unsigned (or unverified) images are
//! refused, and the public keys its signatures are verified against. Read on every manifest
//! `GET` of a registry, so each process keeps them for [`CACHE_TTL`] (and forgets its copy at
//! once when it writes them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::keys::TrustKey;
use super::TrustError;
use crate::app::App;
use crate::metadata::{Collection, Expect, MetadataError, UnixTime};

/// Settings by registry name.
const SETTINGS: Collection<TrustSettings> = Collection::new("trust-settings");

/// How long a process serves settings it read without reading them again.
pub const CACHE_TTL: Duration = Duration::from_secs(10);

/// The most keys one registry trusts.
pub const MAX_KEYS: usize = 32;

/// The longest key name.
pub const MAX_KEY_NAME: usize = 128;

/// What a registry requires of an image before a pull-only principal may `GET` its manifest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrustMode {
    /// nothing (signatures are still detected and shown)
    #[default]
    Off,
    /// a signature of any shape exists (NCR's and Harbor's "prevent unsigned images")
    AnySignature,
    /// a signature verifies against one of the registry's keys
    TrustedKeys,
}

impl TrustMode {
    /// Reads a mode as the API and CLI take it.
    pub fn parse(text: &str) -> Result<Self, TrustError> {
        match text.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "off" => Ok(Self::Off),
            "any-signature" => Ok(Self::AnySignature),
            "trusted-keys" => Ok(Self::TrustedKeys),
            _ => Err(TrustError::Invalid(format!(
                "trust mode {:?} is not off, any-signature or trusted-keys",
                text.chars().take(40).collect::<String>()
            ))),
        }
    }

    /// The mode's name, as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::AnySignature => "any-signature",
            Self::TrustedKeys => "trusted-keys",
        }
    }
}

/// One public key a registry trusts, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKey {
    /// `sha256:<hex>` of the key's DER SubjectPublicKeyInfo
    pub id: String,
    /// `ecdsa-p256` or `ed25519`
    pub algorithm: String,
    /// the PEM as registered
    pub pem: String,
    /// a name for people (`release-signing`)
    #[serde(default)]
    pub name: Option<String>,
    /// when it was added
    pub added_at: UnixTime,
    /// who added it
    pub added_by: String,
}

/// A registry's trust settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustSettings {
    /// what a pull-only principal's manifest `GET` requires
    #[serde(default)]
    pub mode: TrustMode,
    /// the keys signatures are verified against
    #[serde(default)]
    pub keys: Vec<StoredKey>,
}

/// Settings with their keys parsed, as verification and the pull gate use them.
#[derive(Debug, Default)]
pub struct Loaded {
    /// the settings as stored
    pub settings: TrustSettings,
    /// the keys, parsed (a stored key that no longer parses is left out)
    pub keys: Vec<TrustKey>,
}

impl Loaded {
    fn of(settings: TrustSettings) -> Self {
        let keys = settings.keys.iter().filter_map(|k| TrustKey::from_pem(&k.pem).ok()).collect();
        Self { settings, keys }
    }

    /// Whether `id` is one of the registry's keys now (a removed key verifies nothing).
    pub fn trusts(&self, id: &str) -> bool {
        self.keys.iter().any(|k| k.id == id)
    }
}

type Cached = HashMap<String, (Instant, Arc<Loaded>)>;
static CACHE: Mutex<Option<Cached>> = Mutex::new(None);

/// Drops this process's copy of `registry`'s settings (the next read reads the store).
pub fn forget_cached(registry: &str) {
    if let Some(map) = CACHE.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
        map.remove(registry);
    }
}

/// The settings of `registry`; defaults (off, no keys) when none were written.
pub async fn get(app: &App, registry: &str) -> Result<Arc<Loaded>, TrustError> {
    if let Some(map) = CACHE.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
        if let Some((at, loaded)) = map.get(registry) {
            if at.elapsed() < CACHE_TTL {
                return Ok(loaded.clone());
            }
        }
    }
    let settings = SETTINGS.get(app.meta.as_ref(), registry).await?.map(|v| v.record).unwrap_or_default();
    let loaded = Arc::new(Loaded::of(settings));
    CACHE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(HashMap::new)
        .insert(registry.to_string(), (Instant::now(), loaded.clone()));
    Ok(loaded)
}

/// How often a settings change that lost a race is tried again (administrators adding keys
/// from a script at once: each round, one of them wins).
const ATTEMPTS: u32 = 20;

/// Changes `registry`'s settings with `change`, read-modify-write under the stored version, so
/// two administrators adding keys at once both land. Returns what `change` returned.
async fn update<R>(
    app: &App,
    registry: &str,
    mut change: impl FnMut(&mut TrustSettings) -> Result<R, TrustError>,
) -> Result<R, TrustError> {
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            // spread the losers out (the subsecond clock is jitter enough)
            let jitter = u64::from(
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_micros())
                    % 10_000,
            );
            tokio::time::sleep(Duration::from_micros(jitter + u64::from(attempt) * 2_000)).await;
        }
        let (mut settings, expect) = match SETTINGS.get(app.meta.as_ref(), registry).await? {
            Some(v) => (v.record, Expect::Version(v.version)),
            None => (TrustSettings::default(), Expect::Absent),
        };
        let result = change(&mut settings)?;
        match SETTINGS.put(app.meta.as_ref(), registry, &settings, expect).await {
            Ok(_) => {
                forget_cached(registry);
                return Ok(result);
            }
            Err(MetadataError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(TrustError::Conflict(format!("the trust settings of {registry:?} kept changing; try again")))
}

/// Sets what `registry` requires of a pulled image.
pub async fn set_mode(app: &App, registry: &str, mode: TrustMode) -> Result<(), TrustError> {
    update(app, registry, |s| {
        s.mode = mode;
        Ok(())
    })
    .await
}

/// Adds a public key (PEM) to `registry`; adding a key it already trusts changes only its name.
pub async fn add_key(
    app: &App,
    registry: &str,
    pem: &str,
    name: Option<String>,
    by: &str,
) -> Result<StoredKey, TrustError> {
    let key = TrustKey::from_pem(pem)?;
    if let Some(n) = &name {
        if n.is_empty() || n.len() > MAX_KEY_NAME || n.chars().any(char::is_control) {
            return Err(TrustError::Invalid(format!(
                "a key name is 1 to {MAX_KEY_NAME} characters without control characters"
            )));
        }
    }
    let stored = StoredKey {
        id: key.id.clone(),
        algorithm: key.algorithm().to_string(),
        pem: pem.trim().to_string() + "\n",
        name,
        added_at: app.clock.now(),
        added_by: by.to_string(),
    };
    update(app, registry, |s| {
        if let Some(existing) = s.keys.iter_mut().find(|k| k.id == stored.id) {
            existing.name = stored.name.clone();
            return Ok(existing.clone());
        }
        if s.keys.len() >= MAX_KEYS {
            return Err(TrustError::Invalid(format!("a registry trusts at most {MAX_KEYS} keys")));
        }
        s.keys.push(stored.clone());
        Ok(stored.clone())
    })
    .await
}

/// Removes the key `id` from `registry`; `false` if it was not there.
pub async fn remove_key(app: &App, registry: &str, id: &str) -> Result<bool, TrustError> {
    update(app, registry, |s| {
        let before = s.keys.len();
        s.keys.retain(|k| k.id != id);
        Ok(s.keys.len() != before)
    })
    .await
}

/// Deletes a registry's settings (the registry is gone).
pub async fn forget(app: &App, registry: &str) -> Result<(), TrustError> {
    SETTINGS.delete(app.meta.as_ref(), registry, Expect::Any).await?;
    forget_cached(registry);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_as_the_api_and_cli_write_them() {
        assert_eq!(TrustMode::parse("any-signature").unwrap(), TrustMode::AnySignature);
        assert_eq!(TrustMode::parse(" Trusted_Keys ").unwrap(), TrustMode::TrustedKeys);
        assert_eq!(TrustMode::parse("off").unwrap().as_str(), "off");
        assert!(TrustMode::parse("on").is_err());
        let json = serde_json::to_string(&TrustMode::TrustedKeys).unwrap();
        assert_eq!(json, "\"trusted-keys\"");
    }
}
