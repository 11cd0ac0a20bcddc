//! `GET|POST /api/v1/registries/{registry}/cleanup/rules`: lists or adds image cleanup rules.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::manage::policies::CLEANUP_RULES).await
}
