//! Image trust (NCR's "Image Trust"): which signatures an artifact has, in which of the shapes
//! signing tools push them ([`signature`]), and whether they verify against public keys an
//! operator registered ([`keys`]). Verification is Berth's own, over RustCrypto primitives: the
//! registry never calls out to a transparency log.

pub mod keys;
pub mod signature;

/// Why a key or a signature could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A public key is not a PEM SubjectPublicKeyInfo of a supported algorithm.
    #[error("not a supported public key (PEM `PUBLIC KEY` of ECDSA P-256 or Ed25519): {0}")]
    Key(String),
    /// A signature object is not what its shape says.
    #[error("not a readable signature: {0}")]
    Signature(String),
}
