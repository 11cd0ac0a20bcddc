//! Layer facts, read once per layer digest: a layer shared by many images, or scanned again after
//! a vulnerability-data update or a stopped scan, is never read twice.

use serde::{Deserialize, Serialize};
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::inventory::{self, LayerFacts};
use super::ScanError;
use crate::app::App;
use crate::metadata::{Collection, Expect};
use crate::oci::Digest;

/// Facts by layer digest.
const LAYER_FACTS: Collection<StoredFacts> = Collection::new("scan-layer-facts");

/// Bumped when the reader learns new files, so older facts are read again.
const READER_VERSION: u32 = 3;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredFacts {
    reader: u32,
    /// packed: a full Debian `status` outgrows a DynamoDB item as JSON
    #[serde(with = "super::packed")]
    facts: LayerFacts,
}

/// Whether a blob of `media_type` is a filesystem layer (not a config or an artifact's file).
pub fn is_layer(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.oci.image.layer.")
        || media_type.starts_with("application/vnd.docker.image.rootfs.")
}

/// The facts of layer `digest`, and whether its bytes had to be read for them.
pub async fn facts_of(app: &App, digest: &Digest) -> Result<(LayerFacts, bool), ScanError> {
    let id = digest.to_string();
    if let Some(stored) = LAYER_FACTS.get(app.meta.as_ref(), &id).await? {
        if stored.record.reader == READER_VERSION {
            return Ok((stored.record.facts, false));
        }
    }
    // a stream all the way: blob store → (gunzip) → tar, on a blocking thread
    let reader = StreamReader::new(app.blobs.read(digest, None).await?);
    let facts = tokio::task::spawn_blocking(move || inventory::read_layer(SyncIoBridge::new(reader)))
        .await
        .map_err(|e| ScanError::Reader(e.to_string()))??;
    let stored = StoredFacts { reader: READER_VERSION, facts };
    LAYER_FACTS.put(app.meta.as_ref(), &id, &stored, Expect::Any).await?;
    Ok((stored.facts, true))
}
