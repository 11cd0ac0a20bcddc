//! `PUT|DELETE /api/v1/images/{image}/tags/{tag}`: creates, moves or deletes a tag without docker.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::manage::artifacts::TAG).await
}
