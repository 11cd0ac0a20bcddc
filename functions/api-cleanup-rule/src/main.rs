//! `PATCH|DELETE /api/v1/registries/{registry}/cleanup/rules/{rule}`: enables, disables or deletes a cleanup rule.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::manage::policies::CLEANUP_RULE).await
}
