//! `GET /api/v1/images/{image}/tags`: lists and searches an image's tags.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::manage::artifacts::TAGS).await
}
