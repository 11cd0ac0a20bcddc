//! Vulnerability scanning: which packages an image installs ([`inventory`], read once per layer
//! by [`layers`]), which known vulnerabilities affect them ([`vulndb`] loaded by [`data`],
//! matched in [`report`]) by each package manager's own version ordering ([`version`]), how bad
//! they are ([`severity`]), and each artifact's scan from request to result ([`artifact`]).

pub mod artifact;
pub mod attach;
pub mod bolt;
pub mod data;
pub mod gate;
pub mod inventory;
pub mod layers;
pub mod packed;
pub mod policy;
pub mod report;
pub mod rpmdb;
pub mod sbom;
pub mod severity;
pub mod trivy;
pub mod version;
pub mod vulndb;

use crate::metadata::MetadataError;

/// Why a scan (or a request about one) failed.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// A request field is invalid.
    #[error("{0}")]
    Invalid(String),
    /// No such artifact.
    #[error("{0}")]
    NotFound(String),
    /// The artifact is being scanned already, or changed meanwhile.
    #[error("{0}")]
    Conflict(String),
    /// The pull gate refused an artifact (the message names the vulnerabilities and the threshold).
    #[error("{0}")]
    Refused(String),
    /// There is no usable vulnerability data.
    #[error("{0}")]
    NoData(String),
    /// The vulnerability data is malformed.
    #[error(transparent)]
    Data(#[from] vulndb::VulnDbError),
    /// A layer could not be read.
    #[error(transparent)]
    Layer(inventory::InventoryError),
    /// A manifest could not be read or parsed.
    #[error("reading a manifest: {0}")]
    Manifest(String),
    /// The metadata store failed.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The blob store failed.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// Queuing the scan failed.
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
    /// Storing an artifact the scanner attaches (the data snapshot, an SBOM) failed; tried again.
    #[error("storing an attached artifact: {0}")]
    Attach(String),
    /// The scratch disk failed (full, read-only); tried again.
    #[error("{0}")]
    Scratch(String),
    /// A blocking reader stopped unexpectedly.
    #[error("a layer reader stopped: {0}")]
    Reader(String),
}

impl From<inventory::InventoryError> for ScanError {
    fn from(e: inventory::InventoryError) -> Self {
        match e {
            // the scratch disk's failure, not the layer's: tried again
            inventory::InventoryError::Scratch { .. } => Self::Scratch(e.to_string()),
            other => Self::Layer(other),
        }
    }
}

/// How old a scratch copy (an unpacked Trivy database, an rpm database) must be before another
/// process may take it for one a killed process left behind (an import takes minutes).
const STALE_SCRATCH: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes scratch files and directories named `prefix*` in `parent` older than an hour (left by
/// killed processes), so a warm Lambda's /tmp or a long-running server's does not fill.
fn sweep_stale(parent: &std::path::Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let old = entry.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok());
        if !name.to_string_lossy().starts_with(prefix) || old.is_none_or(|age| age <= STALE_SCRATCH) {
            continue;
        }
        let path = entry.path();
        let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        if let Err(e) = removed {
            tracing::warn!(path = %path.display(), error = %e, "could not remove a stale scratch copy");
        }
    }
}
