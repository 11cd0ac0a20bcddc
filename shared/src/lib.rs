//! Berth: an OCI container registry whose route handlers run unchanged as AWS Lambda functions
//! (S3, DynamoDB, SQS) or together in one local process (`berth serve`, embedded storage).

/// Lets code compiled both into this crate and into its integration tests (`testing.rs`, included
/// by path) name the library as `berth::` in either.
#[cfg(test)]
extern crate self as berth;

pub mod access;
pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod aws;
pub mod body;
pub mod cache;
pub mod cache_settings;
pub mod config;
pub mod connections;
pub mod cron;
pub mod events;
pub mod gc;
pub mod identity;
pub mod jobs;
pub mod lambda;
pub mod metadata;
pub mod oci;
pub mod outbound;
pub mod outbox;
pub mod policy;
pub mod port_limit;
pub mod queue;
pub mod registry;
pub mod remote;
pub mod replication;
pub mod replication_settings;
pub mod scan;
pub mod schedule;
pub mod sealed;
pub mod secrets;
pub mod serve;
pub mod state;
pub mod storage;
pub mod task;
pub mod telemetry;
#[cfg(test)]
pub mod testing;
pub mod trust;
pub mod upload_token;
pub mod usage;
pub mod web;
pub mod webhook;
