//! `GET|DELETE /api/v1/images/{image}/artifacts/{digest}`: shows or deletes one artifact.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::manage::artifacts::ARTIFACT).await
}
