//! `GET|POST /api/v1/registries/{registry}/protection/rules`: lists or adds image protection rules.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::manage::policies::PROTECTION_RULES).await
}
