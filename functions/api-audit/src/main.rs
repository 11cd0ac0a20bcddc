//! `GET /api/v1/audit`: reads the audit log.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::manage::audit::AUDIT).await
}
