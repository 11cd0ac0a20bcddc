//! Image trust (NCR's "Image Trust"): which signatures an artifact has, in which of the shapes
//! signing tools push them ([`signature`]), whether they verify against public keys an operator
//! registered ([`keys`], [`settings`]), recorded on the artifact ([`status`]) for listings and
//! the pull gate ([`gate`]). Verification is Berth's own, over RustCrypto primitives: the
//! registry never calls out to a transparency log.

pub mod gate;
pub mod keys;
pub mod settings;
pub mod signature;
pub mod status;

/// Why a trust operation failed or was refused.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A public key is not a PEM SubjectPublicKeyInfo of a supported algorithm.
    #[error("not a supported public key (PEM `PUBLIC KEY` of ECDSA P-256 or Ed25519): {0}")]
    Key(String),
    /// A signature object is not what its shape says.
    #[error("not a readable signature: {0}")]
    Signature(String),
    /// A request asked for something invalid.
    #[error("{0}")]
    Invalid(String),
    /// No such registry or key.
    #[error("{0}")]
    NotFound(String),
    /// Concurrent changes kept winning.
    #[error("{0}")]
    Conflict(String),
    /// The pull gate refused a manifest `GET`.
    #[error("{0}")]
    Refused(String),
    /// The metadata store failed.
    #[error(transparent)]
    Metadata(#[from] crate::metadata::MetadataError),
    /// The job queue failed.
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
    /// A status could not be encoded (a bug, not the caller's fault).
    #[error("encoding a signature status failed: {0}")]
    Encode(String),
}
