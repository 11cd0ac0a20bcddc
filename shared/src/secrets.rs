//! Which key seals secrets at rest ([`crate::sealed`]): the operator's `BERTH_SECRETS_KEY`
//! (base64 of 32 bytes, e.g. from SSM), or else a key generated on first use and kept in the
//! metadata store. Only the operator's key keeps a copy of the stored records alone from
//! revealing the secrets; the README says so.

use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::metadata::{Collection, Expect, MetadataError, UnixTime};
use crate::sealed::{SealError, SecretsKey};

/// Why the secrets key is unavailable.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The key is invalid, or sealing failed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The generated key could not be read or stored.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

/// The generated key as stored when the operator supplies none (no `Debug`: it is the key).
#[derive(Serialize, Deserialize)]
struct StoredKey {
    /// base64 of 32 bytes
    key: String,
    /// when it was generated
    created_at: UnixTime,
}

const SETTINGS: Collection<StoredKey> = Collection::new(crate::access::signing::COLLECTION);
const DOCUMENT: &str = "secrets-key";

/// The process's secrets key: `BERTH_SECRETS_KEY`, or the generated one (created on first use).
pub async fn key(app: &App) -> Result<SecretsKey, SecretsError> {
    if let Some(cached) = app.events.secrets_key.get() {
        return Ok(cached.clone());
    }
    let key = match &app.settings.webhooks.secrets_key {
        Some(text) => SecretsKey::from_b64(text.expose())?,
        None => load_or_create(app).await?,
    };
    Ok(app.events.secrets_key.get_or_init(|| key).clone())
}

async fn load_or_create(app: &App) -> Result<SecretsKey, SecretsError> {
    loop {
        if let Some(stored) = SETTINGS.get(app.meta.as_ref(), DOCUMENT).await? {
            return Ok(SecretsKey::from_b64(&stored.record.key)?);
        }
        let stored = StoredKey { key: SecretsKey::generate_b64()?, created_at: app.clock.now() };
        match SETTINGS.put(app.meta.as_ref(), DOCUMENT, &stored, Expect::Absent).await {
            Ok(_) => return Ok(SecretsKey::from_b64(&stored.key)?),
            Err(MetadataError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
