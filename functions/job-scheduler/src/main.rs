//! Job scheduler, triggered by an EventBridge schedule: enqueues the housekeeping jobs (upload
//! expiry) on every tick.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_job_scheduler().await
}
