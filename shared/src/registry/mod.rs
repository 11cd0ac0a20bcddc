//! The registry's rules, written against the ports only: how uploads become verified blobs, how
//! manifests are checked and stored, and what is visible in which repository.

pub mod artifacts;
pub mod blobs;
pub mod manifests;
pub mod pulls;
pub mod uploads;

pub use artifacts::ArtifactError;
pub use blobs::BlobError;
pub use manifests::PushError;
pub use uploads::UploadError;
