//! Image caches (pull-through registries): a cache-type registry serves the images of a source
//! registry ([`source`]), fetched on first pull and kept. Manifests follow the guide's decision
//! table ([`pull`]); blobs stream from the source to the client and into storage in one pass and
//! count only once their digest verifies ([`fill`]); one caller per blob fetches it from the
//! source at a time, across processes ([`lease`]); an image's manifest is recorded only when
//! everything it references is stored, so nothing is ever half-visible.

pub mod fill;
pub mod lease;
pub mod pull;
pub mod source;
pub mod upstream;

pub use crate::cache_settings::CacheSettings;

use crate::app::App;
use crate::identity::registry;
use crate::metadata::MetadataError;
use crate::oci::{Digest, RepoName};
use crate::remote::RemoteError;
use source::StoredCache;

/// Why an image-cache request or job failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A field is invalid (the message names it).
    #[error("{0}")]
    Invalid(String),
    /// No such cache.
    #[error("{0} does not exist")]
    NotFound(String),
    /// The name is taken.
    #[error("{0}")]
    Exists(String),
    /// The cache is in use, or changed meanwhile.
    #[error("{0}")]
    Conflict(String),
    /// The source has no such manifest (or no longer has it).
    #[error("{0}")]
    ManifestUnknown(String),
    /// The source has no such blob.
    #[error("blob {0} is not at the source")]
    BlobUnknown(Digest),
    /// The source cannot be reached and nothing is cached.
    #[error("{0}")]
    SourceDown(String),
    /// The blob is being cached elsewhere; the client should retry shortly.
    #[error("{0}")]
    Busy(String),
    /// The source answered something unusable (its answer text is left out: it may echo the
    /// request, the cache's credentials included).
    #[error("the source registry: {}", .0.brief())]
    Remote(#[from] RemoteError),
    /// A secret could not be sealed or opened.
    #[error(transparent)]
    Seal(#[from] crate::sealed::SealError),
    /// The secrets key is unavailable.
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),
    /// The metadata store failed.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The blob store failed.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// Staging or publishing a blob failed.
    #[error(transparent)]
    Upload(#[from] crate::registry::UploadError),
    /// The job queue failed.
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
    /// A cached manifest could not be parsed or stored.
    #[error(transparent)]
    Manifest(#[from] crate::registry::PushError),
    /// Reading the registry failed.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// The default cleanup rule could not be added.
    #[error(transparent)]
    Cleanup(#[from] crate::policy::cleanup::CleanupError),
}

/// The cache behind `repo`'s registry, when it is a cache-type registry.
pub async fn of_repository(app: &App, repo: &RepoName) -> Result<Option<StoredCache>, CacheError> {
    let reg = registry::of_repository(repo.as_str());
    let record = crate::access::guard::registry_of(app, reg).await.map_err(|e| match e {
        crate::access::AccessError::Metadata(m) => CacheError::Metadata(m),
        crate::access::AccessError::Identity(i) => CacheError::Identity(i),
        other => CacheError::Invalid(other.to_string()),
    })?;
    let Some(name) = record.and_then(|r| r.cache) else {
        return Ok(None);
    };
    match source::get(app, &name).await? {
        Some((cache, _)) => Ok(Some(cache)),
        None => Err(CacheError::SourceDown(format!("registry {reg:?} caches {name:?}, which no longer exists"))),
    }
}

/// The repository at the source that `repo` (`<registry>/<source repository>`) mirrors.
pub fn source_repository(repo: &RepoName) -> Option<&str> {
    repo.as_str().split_once('/').map(|(_, rest)| rest)
}

/// For a Docker Hub cache, the path an official image's short name (`<registry>/alpine`) must
/// use (`<registry>/library/alpine`), as Docker Hub itself names it.
pub fn library_path(cache: &StoredCache, repo: &RepoName) -> Option<String> {
    let (registry, rest) = repo.as_str().split_once('/')?;
    (cache.kind == source::SourceKind::DockerHub && !rest.contains('/')).then(|| format!("{registry}/library/{rest}"))
}
