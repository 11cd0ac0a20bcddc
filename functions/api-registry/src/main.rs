//! `GET|PATCH|DELETE /api/v1/registries/{registry}`: shows, changes and deletes one registry.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::manage::registries::REGISTRY).await
}
