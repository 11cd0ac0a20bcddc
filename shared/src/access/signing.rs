//! The token signing key: created on first start and kept in the metadata store (encrypted at
//! rest on DynamoDB; inside the data directory's database on embedded storage), or supplied by
//! the operator in `BERTH_TOKEN_SIGNING_KEY` (a base64 Ed25519 seed, e.g. from SSM).

use std::sync::Arc;

use serde_json::json;

use super::AccessError;
use crate::app::App;
use crate::auth::jwt::SigningKey;
use crate::metadata::{Expect, MetadataError};

/// Where the generated key is kept.
pub const COLLECTION: &str = "setting";
/// Its document id.
pub const DOCUMENT: &str = "token-signing-key";

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
        if let Some(doc) = app.meta.get_document(COLLECTION, DOCUMENT).await? {
            let seed = doc.body.get("seed").and_then(|s| s.as_str()).unwrap_or_default();
            return SigningKey::from_seed_b64(seed).map(Arc::new).map_err(|e| AccessError::SigningKey(e.to_string()));
        }
        let fresh = SigningKey::generate().map_err(|e| AccessError::SigningKey(e.to_string()))?;
        let body = json!({ "seed": fresh.seed_b64(), "created_at": app.clock.now() });
        match app.meta.put_document(COLLECTION, DOCUMENT, &body, Expect::Absent).await {
            Ok(_) => return Ok(Arc::new(fresh)),
            // Another process created it first: use theirs.
            Err(MetadataError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
