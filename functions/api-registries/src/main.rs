//! `GET|POST /api/v1/registries`: lists and creates registries.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::manage::registries::REGISTRIES).await
}
