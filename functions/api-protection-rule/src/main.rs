//! `PATCH|DELETE /api/v1/registries/{registry}/protection/rules/{rule}`: enables, disables or deletes a protection rule.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::manage::policies::PROTECTION_RULE).await
}
