//! The application value every handler receives: the three ports, the settings and a clock.
//! `App::embedded` is the one place that chooses adapters for `berth serve`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{parsed, var, ConfigError, Secret};
use crate::metadata::sqlite::SqliteMetadataStore;
use crate::metadata::{MetadataError, MetadataStore, UnixTime};
use crate::queue::sqlite::SqliteJobQueue;
use crate::queue::{JobQueue, QueueError};
use crate::state::content_cache::ContentCache;
use crate::state::AccessState;
use crate::state::PullRecorder;
use crate::storage::fs::FsBlobStore;
use crate::storage::{BlobStore, StorageError};
use crate::upload_token::UploadTokens;

/// Tunables that shape the registry's behaviour, with production defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    /// how long an upload session may sit idle before its staged data is reclaimed
    pub upload_expiry: Duration,
    /// the smallest chunk size advertised to chunking clients (`OCI-Chunk-Min-Length`); 0 = none
    pub chunk_min_length: u64,
    /// the largest manifest accepted
    pub max_manifest_bytes: usize,
    /// the most tags or repositories one list request returns when the client sets no `n`
    pub default_page_size: usize,
    /// how long a redirect to the blob store (S3 presigned GET) stays valid
    pub blob_redirect_expiry: Duration,
    /// absolute base URL (`https://upload.example.net`) of the upload gateway that takes upload
    /// bodies when this process cannot (Lambda); `None` keeps uploads on this host
    pub upload_gateway_url: Option<String>,
    /// signs the `_state` token of upload locations; when set, every upload-session request must carry one
    pub upload_tokens: Option<UploadTokens>,
    /// how long an issued registry token stays valid (12 hours at most)
    pub token_lifetime: Duration,
    /// how long a process trusts that a token's user, role and key are unchanged before it reads
    /// them again: the bound on how long a token outlives a change made by another process
    pub credential_recheck: Duration,
    /// the `iss` of issued tokens
    pub token_issuer: String,
    /// the `service` clients name and the `aud` of issued tokens
    pub token_service: String,
    /// the registry's external base URL (`https://registry.example.net`), for the token realm;
    /// `None` derives it from each request's `Host` and `X-Forwarded-Proto`
    pub public_url: Option<String>,
    /// an operator-supplied Ed25519 seed (base64) for signing tokens; `None` keeps a generated one
    /// in the metadata store
    pub token_signing_key: Option<crate::config::Secret>,
    /// how long garbage collection spares unreferenced blobs and links after their last write,
    /// so a push between uploading its blobs and its manifest keeps them
    pub gc_grace: Duration,
    /// how long a worker holds a leased job before another worker may take it (the embedded
    /// queue's redelivery time after a crash; SQS uses the queue's visibility timeout)
    pub job_lease: Duration,
    /// when online garbage collection runs by itself (five-field UTC cron); `None` = only on demand
    pub gc_schedule: Option<String>,
    /// how long after a change to an image its storage use is recounted (by a queued job, so a
    /// push's last writes have landed by then)
    pub usage_refresh_delay: Duration,
    /// webhook delivery, the outbound guard and the secrets key
    pub webhooks: crate::events::WebhookSettings,
    /// replication copy steps, request timeouts and retries
    pub replication: crate::replication_settings::ReplicationSettings,
    /// image caches: source ports, freshness, budgets and mirror hosts
    pub cache: crate::cache_settings::CacheSettings,
    /// where the scanner's vulnerability data lives: an artifact in Berth itself
    /// (`registry/image:tag`, `BERTH_SCAN_DB`) that an operator pushes or mirrors
    pub scan_db: String,
}

/// Where vulnerability data is read from unless `BERTH_SCAN_DB` says otherwise.
pub const DEFAULT_SCAN_DB: &str = "security/vulndb:latest";

impl Default for Settings {
    fn default() -> Self {
        Settings {
            upload_expiry: Duration::from_secs(24 * 3600),
            chunk_min_length: 0,
            max_manifest_bytes: 4 * 1024 * 1024,
            default_page_size: 1000,
            blob_redirect_expiry: Duration::from_secs(120),
            upload_gateway_url: None,
            upload_tokens: None,
            token_lifetime: Duration::from_secs(3600),
            credential_recheck: Duration::from_secs(30),
            token_issuer: "berth".to_string(),
            token_service: "berth".to_string(),
            public_url: None,
            token_signing_key: None,
            gc_grace: Duration::from_secs(2 * 3600),
            job_lease: DEFAULT_JOB_LEASE,
            gc_schedule: Some(DEFAULT_GC_SCHEDULE.to_string()),
            usage_refresh_delay: Duration::from_secs(5),
            webhooks: crate::events::WebhookSettings::default(),
            replication: crate::replication_settings::ReplicationSettings::default(),
            cache: crate::cache_settings::CacheSettings::default(),
            scan_db: DEFAULT_SCAN_DB.to_string(),
        }
    }
}

impl Settings {
    /// These settings with what deployments tune through the environment (`BERTH_*`) applied.
    pub fn with_env(self) -> Result<Settings, ConfigError> {
        let mut s = self;
        if let Some(secs) = parsed::<u64>("BERTH_PRESIGN_EXPIRY_SECONDS")? {
            s.blob_redirect_expiry = Duration::from_secs(secs);
        }
        if let Some(secs) = parsed::<u64>("BERTH_UPLOAD_EXPIRY_SECONDS")? {
            s.upload_expiry = Duration::from_secs(secs);
        }
        if let Some(n) = parsed::<u64>("BERTH_CHUNK_MIN_LENGTH")? {
            s.chunk_min_length = n;
        }
        if let Some(url) = var("BERTH_UPLOAD_GATEWAY_URL") {
            s.upload_gateway_url = Some(url);
        }
        if let Some(key) = var("BERTH_UPLOAD_TOKEN_KEY") {
            if key.len() < 32 {
                return Err(ConfigError::Invalid {
                    name: "BERTH_UPLOAD_TOKEN_KEY",
                    reason: "use at least 32 characters".into(),
                });
            }
            let ttl = Duration::from_secs(parsed::<u64>("BERTH_UPLOAD_TOKEN_TTL_SECONDS")?.unwrap_or(24 * 3600));
            s.upload_tokens = Some(UploadTokens::new(key.into_bytes(), ttl));
        }
        if let Some(secs) = parsed::<u64>("BERTH_TOKEN_LIFETIME_SECONDS")? {
            if secs == 0 || secs > 12 * 3600 {
                return Err(ConfigError::Invalid {
                    name: "BERTH_TOKEN_LIFETIME_SECONDS",
                    reason: "use 1 to 43200 seconds (12 hours at most)".into(),
                });
            }
            s.token_lifetime = Duration::from_secs(secs);
        }
        if let Some(secs) = parsed::<u64>("BERTH_CREDENTIAL_RECHECK_SECONDS")? {
            if secs > 300 {
                return Err(ConfigError::Invalid {
                    name: "BERTH_CREDENTIAL_RECHECK_SECONDS",
                    reason: "use 0 to 300 seconds".into(),
                });
            }
            s.credential_recheck = Duration::from_secs(secs);
        }
        if let Some(url) = var("BERTH_PUBLIC_URL") {
            s.public_url = Some(url);
        }
        if let Some(service) = var("BERTH_TOKEN_SERVICE") {
            s.token_service = service;
        }
        if let Some(seed) = var("BERTH_TOKEN_SIGNING_KEY") {
            s.token_signing_key = Some(Secret::new(seed));
        }
        if let Some(secs) = parsed::<u64>("BERTH_GC_GRACE_SECONDS")? {
            s.gc_grace = Duration::from_secs(secs);
        }
        if let Some(cron) = var("BERTH_GC_CRON") {
            s.gc_schedule = match cron.trim() {
                "" | "off" => None,
                expr => {
                    crate::cron::Cron::parse(expr)
                        .map_err(|e| ConfigError::Invalid { name: "BERTH_GC_CRON", reason: e.to_string() })?;
                    Some(expr.to_string())
                }
            };
        }
        if let Some(secs) = parsed::<u64>("BERTH_JOB_LEASE_SECONDS")? {
            s.job_lease = Duration::from_secs(secs.clamp(1, 43_200));
        }
        s.webhooks = s.webhooks.with_env()?;
        s.replication = s.replication.with_env()?;
        s.cache = s.cache.with_env()?;
        if let Some(reference) = var("BERTH_SCAN_DB") {
            s.scan_db = reference;
        }
        Ok(s)
    }
}

/// How long a worker may hold a job before it is delivered to another worker, by default
/// (`Settings::job_lease`).
pub const DEFAULT_JOB_LEASE: Duration = Duration::from_secs(300);

/// When garbage collection runs by itself unless `BERTH_GC_CRON` says otherwise: daily, 04:30 UTC.
pub const DEFAULT_GC_SCHEDULE: &str = "30 4 * * *";

/// The source of "now", replaceable in tests.
pub trait Clock: Send + Sync + 'static {
    /// Seconds since the Unix epoch.
    fn now(&self) -> UnixTime;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
    }
}

/// Why the application could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The blob store could not be opened.
    #[error("opening blob storage: {0}")]
    Storage(#[from] StorageError),
    /// The metadata store could not be opened.
    #[error("opening metadata: {0}")]
    Metadata(#[from] MetadataError),
    /// The job queue could not be opened.
    #[error("opening the job queue: {0}")]
    Queue(#[from] QueueError),
    /// A setting is missing or invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// Everything a handler may touch. Handlers never learn which adapters are behind the ports.
#[derive(Clone)]
pub struct App {
    /// blob and manifest bytes
    pub blobs: Arc<dyn BlobStore>,
    /// repositories, manifests, tags, sessions
    pub meta: Arc<dyn MetadataStore>,
    /// background jobs
    pub queue: Arc<dyn JobQueue>,
    /// tunables
    pub settings: Settings,
    /// the time source
    pub clock: Arc<dyn Clock>,
    /// immutable manifest bytes already read, so hot manifests skip the blob store
    pub manifest_cache: Arc<ContentCache>,
    /// the signing key, verified-secret cache and login limiter
    pub access: Arc<AccessState>,
    /// when this process last wrote each manifest's pull time, so hot pulls write rarely
    pub pull_recorder: Arc<PullRecorder>,
    /// the secrets key, the pull-subscriber cache and the event bus
    pub events: Arc<crate::events::EventState>,
    /// image-cache sources: tags checked lately, ECR passwords
    pub upstream: Arc<crate::state::UpstreamState>,
}

impl App {
    /// The embedded backend: blob files, SQLite metadata and job table, all under `data_dir`.
    pub fn embedded(data_dir: &Path, settings: Settings) -> Result<App, AppError> {
        let db = data_dir.join("meta.db");
        make_private(data_dir, &db).map_err(StorageError::Io)?;
        Ok(App {
            blobs: Arc::new(FsBlobStore::open(data_dir)?),
            meta: Arc::new(SqliteMetadataStore::open(&db)?),
            queue: Arc::new(SqliteJobQueue::open(&db)?),
            settings,
            clock: Arc::new(SystemClock),
            manifest_cache: Arc::new(ContentCache::default()),
            access: Arc::new(AccessState::default()),
            pull_recorder: Arc::new(PullRecorder::default()),
            events: Arc::new(crate::events::EventState::default()),
            upstream: Arc::new(crate::state::UpstreamState::default()),
        })
    }
}

/// Makes the data directory readable by this process's user only (0700, tightened when it was
/// created wider) and `meta.db` with its WAL files 0600: the database holds the token signing
/// seed and every secret hash. SQLite gives the WAL files the database file's mode.
fn make_private(data_dir: &Path, db: &Path) -> std::io::Result<()> {
    crate::storage::fs::create_private_dir(data_dir)?;
    crate::storage::fs::private_file().create(true).truncate(false).write(true).open(db)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let tighten = |path: &Path, mode: u32| -> std::io::Result<()> {
            match std::fs::metadata(path) {
                Ok(m) if m.permissions().mode() & 0o777 != mode => {
                    tracing::warn!(path = %path.display(), "tightening permissions to {mode:o}");
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                }
                Ok(_) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            }
        };
        tighten(data_dir, 0o700)?;
        for suffix in ["", "-wal", "-shm"] {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            tighten(Path::new(&name), 0o600)?;
        }
    }
    Ok(())
}
