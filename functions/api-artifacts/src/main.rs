//! `GET /api/v1/images/{image}/artifacts`: lists an image's artifacts.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::manage::artifacts::ARTIFACTS).await
}
