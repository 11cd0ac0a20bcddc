//! The AWS backend: settings read from the environment, SDK clients built once, the S3, DynamoDB
//! and SQS adapters wired into an [`App`], and resource creation for local runs against moto
//! (Terraform creates the resources in AWS).

use std::sync::Arc;

use aws_config::SdkConfig;

use crate::api::Port;

use crate::app::{App, AppError, Settings, SystemClock};
use crate::config::{parsed, required, var, ConfigError};
use crate::metadata::dynamodb::DynamoMetadataStore;
use crate::port_limit::PortLimited;
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

pub use crate::config::sdk_defaults;

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

/// The application on S3, DynamoDB and SQS, every port held.
pub fn app(sdk: &SdkConfig, aws: &AwsSettings, settings: Settings) -> Result<App, AppError> {
    app_with::<{ Port::ALL }>(sdk, aws, settings)
}

/// The application holding only `PORTS` (a [`Port::mask`]): an S3 blob store limited to those
/// ports if it holds any blob port, an SQS queue if it may send jobs (DynamoDB always: every
/// request is authenticated). In place of a client it does not build, an adapter refuses every
/// call, as the function's IAM role would. A const parameter rather than a value: a Lambda
/// function instantiates only its own set, so an adapter or S3 call it does not use is not
/// linked into it.
pub fn app_with<const PORTS: u16>(sdk: &SdkConfig, aws: &AwsSettings, settings: Settings) -> Result<App, AppError> {
    let blobs: Arc<dyn crate::storage::BlobStore> = if const { PORTS & Port::mask(Port::BLOB_PORTS) != 0 } {
        Arc::new(PortLimited::<_, PORTS>(S3BlobStore::new(s3_client(sdk, aws), aws.bucket.clone())))
    } else {
        Arc::new(crate::storage::unwired::UnwiredBlobStore)
    };
    let queue: Arc<dyn crate::queue::JobQueue> = if const { PORTS & Port::JobsSend.bit() != 0 } {
        let queue_url = aws.queue_url.clone().ok_or(AppError::Config(ConfigError::Missing("BERTH_QUEUE_URL")))?;
        Arc::new(SqsJobQueue::new(aws_sdk_sqs::Client::new(sdk), queue_url))
    } else {
        Arc::new(crate::queue::unwired::UnwiredJobQueue)
    };
    // only the job functions (every port) publish events, so only they link EventBridge
    let mut events = crate::events::EventState::default();
    if const { PORTS == Port::ALL } {
        if let Some(bus) = &settings.webhooks.event_bus {
            events.bus = Some(Arc::new(crate::events::bus::EventBridgeBus::new(
                aws_sdk_eventbridge::Client::new(sdk),
                bus.clone(),
            )));
        }
    }
    Ok(App {
        blobs,
        meta: Arc::new(DynamoMetadataStore::new(aws_sdk_dynamodb::Client::new(sdk), aws.table.clone())),
        queue,
        settings,
        clock: Arc::new(SystemClock),
        manifest_cache: Arc::new(crate::state::content_cache::ContentCache::default()),
        access: Arc::new(crate::state::AccessState::default()),
        pull_recorder: Arc::new(crate::state::PullRecorder::default()),
        events: Arc::new(events),
        upstream: Arc::new(crate::state::UpstreamState::default()),
    })
}

/// The application for the upload gateway or a job function: every client, settings from the
/// environment.
pub async fn app_from_env() -> Result<App, AppError> {
    app_from_env_with::<{ Port::ALL }>().await
}

/// As [`app_from_env`], holding only `PORTS` ([`app_with`]).
pub async fn app_from_env_with<const PORTS: u16>() -> Result<App, AppError> {
    let aws = AwsSettings::from_env()?;
    let settings = Settings::default().with_env()?;
    let sdk = sdk_defaults().load().await;
    app_with::<PORTS>(&sdk, &aws, settings)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use bytes::Bytes;

    use super::*;
    use crate::oci::Digest;
    use crate::testing::{aws_config, unique_name};

    #[tokio::test]
    async fn a_function_reaches_only_the_adapters_its_ports_name() {
        let sdk = aws_config().await;
        let wanted = AwsSettings {
            bucket: unique_name("ports"),
            table: unique_name("ports"),
            queue_url: None,
            queue_name: unique_name("ports"),
            force_path_style: true,
        };
        let aws = create_resources(&sdk, &wanted).await.unwrap();
        let bytes = Bytes::from_static(b"held");
        let digest = Digest::sha256_of(&bytes);

        // no blob port: no S3 client at all
        let meta_only = app_with::<{ Port::mask(&[]) }>(&sdk, &aws, Settings::default()).unwrap();
        let refused = meta_only.blobs.stat(&digest).await.unwrap_err();
        assert!(refused.to_string().contains("declares no blob port"), "{refused}");

        // a reader reaches S3 for reads and is refused writes, which leave nothing behind
        let reader = app_with::<{ Port::mask(&[Port::BlobsRead]) }>(&sdk, &aws, Settings::default()).unwrap();
        assert_eq!(reader.blobs.stat(&digest).await.unwrap(), None);
        let refused = reader.blobs.put(&digest, bytes.clone()).await.unwrap_err();
        assert!(refused.to_string().contains("PUT"), "{refused}");
        assert_eq!(reader.blobs.stat(&digest).await.unwrap(), None);

        // every port: the write lands, and the reader sees it in the same bucket
        let full = app(&sdk, &aws, Settings::default()).unwrap();
        full.blobs.put(&digest, bytes).await.unwrap();
        assert_eq!(reader.blobs.stat(&digest).await.unwrap(), Some(4));
        assert!(reader.blobs.delete(&digest).await.is_err());
        assert_eq!(full.blobs.stat(&digest).await.unwrap(), Some(4));
    }
}
