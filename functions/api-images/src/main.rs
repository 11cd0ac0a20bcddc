//! `GET /api/v1/registries/{registry}/images`: lists a registry's images.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::manage::registries::IMAGES).await
}
