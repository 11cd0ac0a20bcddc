//! The AWS backend: settings read from the environment, SDK clients built once, the S3, DynamoDB
//! and SQS adapters wired into an [`App`], and resource creation for local runs against moto
//! (Terraform creates the resources in AWS).

use aws_config::SdkConfig;

use crate::app::{App, AppError, Settings, SystemClock};
use crate::config::{parsed, required, var, ConfigError};
use crate::metadata::dynamodb::DynamoMetadataStore;
use crate::queue::sqs::SqsJobQueue;
use crate::storage::s3::S3BlobStore;

/// Where the AWS backend keeps things, from `BERTH_*` variables.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    /// `BERTH_BUCKET`: blobs and staged uploads
    pub bucket: String,
    /// `BERTH_TABLE`: all metadata
    pub table: String,
    /// `BERTH_QUEUE_URL`: the jobs queue (or created from `BERTH_QUEUE_NAME` with `--create-resources`)
    pub queue_url: Option<String>,
    /// `BERTH_QUEUE_NAME`: the queue to create when no URL is given (default `berth-jobs`)
    pub queue_name: String,
    /// path-style S3 addressing (`BERTH_S3_FORCE_PATH_STYLE`, default on when an endpoint override is set)
    pub force_path_style: bool,
}

impl AwsSettings {
    /// Reads the settings from the environment.
    pub fn from_env() -> Result<AwsSettings, ConfigError> {
        let endpoint_override = var("AWS_ENDPOINT_URL").is_some() || var("AWS_ENDPOINT_URL_S3").is_some();
        Ok(AwsSettings {
            bucket: required("BERTH_BUCKET")?,
            table: required("BERTH_TABLE")?,
            queue_url: var("BERTH_QUEUE_URL"),
            queue_name: var("BERTH_QUEUE_NAME").unwrap_or_else(|| "berth-jobs".to_string()),
            force_path_style: parsed::<bool>("BERTH_S3_FORCE_PATH_STYLE")?.unwrap_or(endpoint_override),
        })
    }
}

fn s3_client(sdk: &SdkConfig, aws: &AwsSettings) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk).force_path_style(aws.force_path_style).build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Creates the bucket, table and queue if missing (idempotent), returning settings that name the
/// queue URL. For local runs against moto; in AWS, Terraform owns these resources.
pub async fn create_resources(sdk: &SdkConfig, aws: &AwsSettings) -> Result<AwsSettings, AppError> {
    S3BlobStore::create_bucket(&s3_client(sdk, aws), &aws.bucket).await?;
    DynamoMetadataStore::create_table(&aws_sdk_dynamodb::Client::new(sdk), &aws.table).await?;
    let mut out = aws.clone();
    if out.queue_url.is_none() {
        out.queue_url = Some(SqsJobQueue::create_queue(&aws_sdk_sqs::Client::new(sdk), &aws.queue_name).await?);
    }
    Ok(out)
}

/// Which clients the AWS wiring builds. DynamoDB is always built (every request is
/// authenticated against it); a function whose endpoint uses no blob or job port gets no S3 or
/// SQS client, and an adapter that refuses every call in its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wiring {
    /// build the S3 blob store
    pub blobs: bool,
    /// build the SQS job queue
    pub jobs: bool,
}

impl Wiring {
    /// Every client: `berth serve --backend aws`, the upload gateway, the job functions.
    pub const ALL: Wiring = Wiring { blobs: true, jobs: true };
}

/// The application on S3, DynamoDB and SQS.
pub fn app(sdk: &SdkConfig, aws: &AwsSettings, settings: Settings) -> Result<App, AppError> {
    app_wired(sdk, aws, settings, Wiring::ALL)
}

/// The application with only the clients `wiring` asks for.
pub fn app_wired(sdk: &SdkConfig, aws: &AwsSettings, settings: Settings, wiring: Wiring) -> Result<App, AppError> {
    match (wiring.blobs, wiring.jobs) {
        (true, true) => app_with::<true, true>(sdk, aws, settings),
        (true, false) => app_with::<true, false>(sdk, aws, settings),
        (false, true) => app_with::<false, true>(sdk, aws, settings),
        (false, false) => app_with::<false, false>(sdk, aws, settings),
    }
}

/// The application with an S3 blob store if `BLOBS` and an SQS queue if `JOBS`. Const
/// parameters rather than a [`Wiring`] value: a Lambda function instantiates only its own
/// combination, so an adapter it does not use is not linked into it.
pub fn app_with<const BLOBS: bool, const JOBS: bool>(
    sdk: &SdkConfig,
    aws: &AwsSettings,
    settings: Settings,
) -> Result<App, AppError> {
    let blobs: std::sync::Arc<dyn crate::storage::BlobStore> = if BLOBS {
        std::sync::Arc::new(S3BlobStore::new(s3_client(sdk, aws), aws.bucket.clone()))
    } else {
        std::sync::Arc::new(crate::storage::unwired::UnwiredBlobStore)
    };
    let queue: std::sync::Arc<dyn crate::queue::JobQueue> = if JOBS {
        let queue_url = aws.queue_url.clone().ok_or(AppError::Config(ConfigError::Missing("BERTH_QUEUE_URL")))?;
        std::sync::Arc::new(SqsJobQueue::new(aws_sdk_sqs::Client::new(sdk), queue_url))
    } else {
        std::sync::Arc::new(crate::queue::unwired::UnwiredJobQueue)
    };
    Ok(App {
        blobs,
        meta: std::sync::Arc::new(DynamoMetadataStore::new(aws_sdk_dynamodb::Client::new(sdk), aws.table.clone())),
        queue,
        settings,
        clock: std::sync::Arc::new(SystemClock),
        manifest_cache: std::sync::Arc::new(crate::state::content_cache::ContentCache::default()),
        access: std::sync::Arc::new(crate::state::AccessState::default()),
        pull_recorder: std::sync::Arc::new(crate::state::PullRecorder::default()),
    })
}

/// The application for the upload gateway or a job function: every client, settings from the
/// environment.
pub async fn app_from_env() -> Result<App, AppError> {
    app_from_env_with::<true, true>().await
}

/// As [`app_from_env`], building (and linking) only the clients `BLOBS` and `JOBS` ask for.
pub async fn app_from_env_with<const BLOBS: bool, const JOBS: bool>() -> Result<App, AppError> {
    let aws = AwsSettings::from_env()?;
    let settings = Settings::default().with_env()?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    app_with::<BLOBS, JOBS>(&sdk, &aws, settings)
}
