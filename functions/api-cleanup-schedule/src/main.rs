//! `GET|PUT|DELETE /api/v1/registries/{registry}/cleanup/schedule`: shows, sets or removes the cleanup cycle.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::manage::policies::CLEANUP_SCHEDULE).await
}
