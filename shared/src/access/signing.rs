//! The token signing key: created on first start and kept in the metadata store (encrypted at
//! rest on DynamoDB; inside the data directory's database on embedded storage), or supplied by
//! the operator in `BERTH_TOKEN_SIGNING_KEY` (a base64 Ed25519 seed, e.g. from SSM).

use std::sync::Arc;

use super::AccessError;
use crate::app::App;
use crate::auth::jwt::SigningKey;
use crate::metadata::{Collection, Expect, MetadataError, UnixTime};

/// The name of the collection the generated key is kept in.
pub const COLLECTION: &str = "setting";
/// Its document id.
pub const DOCUMENT: &str = "token-signing-key";

/// The generated key as stored (no `Debug`: it holds the seed).
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredKey {
    /// the Ed25519 seed, base64
    seed: String,
    /// when it was generated
    created_at: UnixTime,
}

/// Where the generated key is kept.
const SETTINGS: Collection<StoredKey> = Collection::new(COLLECTION);

/// The signing key, loaded once per process.
pub async fn key(app: &App) -> Result<Arc<SigningKey>, AccessError> {
    app.access.signing.get_or_try_init(|| load_or_create(app)).await.cloned()
}

async fn load_or_create(app: &App) -> Result<Arc<SigningKey>, AccessError> {
    if let Some(seed) = &app.settings.token_signing_key {
        return SigningKey::from_seed_b64(seed.expose())
            .map(Arc::new)
            .map_err(|e| AccessError::SigningKey(e.to_string()));
    }
    loop {
        if let Some(stored) = SETTINGS.get(app.meta.as_ref(), DOCUMENT).await? {
            return SigningKey::from_seed_b64(&stored.record.seed)
                .map(Arc::new)
                .map_err(|e| AccessError::SigningKey(e.to_string()));
        }
        let fresh = SigningKey::generate().map_err(|e| AccessError::SigningKey(e.to_string()))?;
        let stored = StoredKey { seed: fresh.seed_b64(), created_at: app.clock.now() };
        match SETTINGS.put(app.meta.as_ref(), DOCUMENT, &stored, Expect::Absent).await {
            Ok(_) => return Ok(Arc::new(fresh)),
            // Another process created it first: use theirs.
            Err(MetadataError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
