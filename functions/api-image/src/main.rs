//! `DELETE /api/v1/images/{image}`: deletes a whole image.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::manage::artifacts::IMAGE).await
}
