//! OCI vocabulary: digests, names, references, media types and manifests, parsed once at the edge
//! so everything past the route table works with validated types.

pub mod digest;
pub mod manifest;
pub mod name;
pub mod range;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use manifest::{ManifestError, ParsedManifest};
pub use name::{accessory_subject, accessory_tag, NameError, Reference, RepoName, Tag, UploadId};
pub use range::{ByteRange, RangeError};
